"""Descriptor score normalisation against a background set: what the VSC22 descriptor-track
winners added to plain max inner product.

A frame of a busy, generic scene (a face, a crowd, a sunset) is close to many unrelated videos, so
its raw best inner product says little; a frame close to one video and far from everything else
says much. Subtracting from each query row ``beta`` times its similarity to a background set of
unrelated videos turns "how similar" into "how much more similar than usual", and ranks pairs across
queries on one scale, which is what a micro-AP over all pairs measures.

AstraDup draws the background from its own library: a query row's background is its best similarity
to the ``k``-th most similar library video (``k`` = 2 by default), which leaves out the one video it
may be a copy of while staying among the look-alikes. Because the term depends on the query row
alone, it folds into the descriptor itself (:func:`fold`), as VSC22's descriptor track requires:
``[q, -beta * bg] . [r, 1] = q . r - beta * bg``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


class Background:
    """Each query row's ``k`` best per-video similarities, kept while library videos stream past,
    so a whole library (a shard scan) is the background in O(rows x k) memory."""

    def __init__(self, rows: np.ndarray, k: int = 2) -> None:
        self.rows = np.asarray(rows, np.float32)
        self.k = k
        self.top = np.full((k, len(self.rows)), -np.inf, np.float32)  # ascending per column

    def add(self, video_rows: np.ndarray) -> None:
        v = np.asarray(video_rows, np.float32)
        if not len(v) or not len(self.rows) or v.shape[1] != self.rows.shape[1]:
            return
        best = (self.rows @ v.T).max(axis=1)
        self.top = np.sort(np.vstack([self.top, best[None]]), axis=0)[1:]

    def value(self) -> np.ndarray:
        """[N] the ``k``-th best per-video similarity; 0 where fewer than ``k`` videos were seen."""
        kth = self.top[0]
        return np.where(np.isfinite(kth), kth, 0.0).astype(np.float32)


def background(rows: np.ndarray, library: Sequence[np.ndarray], k: int = 2) -> np.ndarray:
    """[N] each row's best similarity to its ``k``-th most similar library video (0 when the library
    holds fewer than ``k`` videos)."""
    bg = Background(rows, k)
    for v in library:
        bg.add(v)
    return bg.value()


def fold(rows: np.ndarray, bg: np.ndarray, beta: float) -> np.ndarray:
    """Query descriptors with the normalisation as one more column (pair with :func:`pad_refs`)."""
    return np.hstack([np.asarray(rows, np.float32), (-beta * np.asarray(bg, np.float32))[:, None]])


def pad_refs(rows: np.ndarray) -> np.ndarray:
    """Reference descriptors with the constant column that picks up a folded query's term."""
    rows = np.asarray(rows, np.float32)
    return np.hstack([rows, np.ones((len(rows), 1), np.float32)])


def pair_scores(queries: Mapping[str, np.ndarray], refs: Mapping[str, np.ndarray]) -> dict[tuple[str, str], float]:
    """VSC22 descriptor-track pair scores: the max inner product over the two videos' rows."""
    return {(q, r): float((qe @ re.T).max()) for q, qe in queries.items() if len(qe)
            for r, re in refs.items() if len(re)}
