"""The record every alignment stage passes on: one copied stretch of a (query, source) pair."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Piece:
    """Query seconds [q_start, q_end] copied from source seconds [s_start, s_end], on the line
    ``source = slope * query + offset``, with its score so far."""

    q_start: float
    q_end: float
    s_start: float
    s_end: float
    score: float
    slope: float
    offset: float
    static: bool = False  # no visible motion: the picture cannot pin the time offset
    full: float = -1.0  # the score before the length factor (-1: not known, the score stands)
