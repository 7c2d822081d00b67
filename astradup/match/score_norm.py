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


def background(rows: np.ndarray, library: Sequence[np.ndarray], k: int = 2) -> np.ndarray:
    """[N] each row's best similarity to its ``k``-th most similar library video (0 when the library
    holds fewer than ``k`` videos)."""
    rows = np.asarray(rows, np.float32)
    if len(library) < k or not len(rows):
        return np.zeros(len(rows), np.float32)
    per_video = np.stack([(rows @ np.asarray(v, np.float32).T).max(axis=1) if len(v) else
                          np.full(len(rows), -1.0, np.float32) for v in library])  # [videos, N]
    return np.sort(per_video, axis=0)[-k].astype(np.float32)


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
