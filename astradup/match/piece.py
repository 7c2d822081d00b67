"""The record every alignment stage passes on: one copied stretch of a (query, source) pair."""
from __future__ import annotations

import dataclasses
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

    def source_span(self, q0: float, q1: float) -> tuple[float, float]:
        """Where the piece's line puts query seconds [q0, q1] in the source (which starts at 0)."""
        return max(self.slope * q0 + self.offset, 0.0), self.slope * q1 + self.offset

    def on_line(self, slope: float, offset: float, q0: float | None = None, q1: float | None = None) -> Piece:
        """The piece on the line ``source = slope * query + offset`` over query [q0, q1] (its own
        query span by default), its source span following."""
        p = dataclasses.replace(self, slope=slope, offset=offset, q_start=self.q_start if q0 is None else q0,
                                q_end=self.q_end if q1 is None else q1)
        s0, s1 = p.source_span(p.q_start, p.q_end)
        return dataclasses.replace(p, s_start=s0, s_end=s1)
