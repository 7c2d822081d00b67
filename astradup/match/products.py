"""A query's frame inner products with one candidate, computed once per pair.

Scoring one pair reads ``q.embeddings @ s.embeddings.T`` (and the mirrored query's) in five places:
the distinctiveness background, the common-content mask, the exact pre-check, the whole-video
evidence and the segment alignment. On a ten-minute video each product is tens of milliseconds and
the five were most of a search by id; ``Searcher.score`` makes them once here and hands them on.
Every consumer still computes its own when given none, so each stays usable (and tested) alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from astradup.records import VideoFeatures

# Above this many query x candidate cells (float32, plain + mirror: 16M cells = 64 MB per search in
# flight) one search does not keep every candidate's products for the background pass; each is made
# again in the candidate's own scoring instead, so a very long query costs time, not memory. A
# 10-minute video against 20 candidates of 7 minutes with its mirror is ~10M.
KEEP_CELLS = 16 * 1024 * 1024


@dataclass(frozen=True)
class FrameProducts:
    """Query frames x candidate frames inner products, and the mirrored query's (None without one)."""

    plain: np.ndarray
    mirror: np.ndarray | None = None

    def best(self) -> np.ndarray:
        """The plain product, the mirrored one's where higher: a new array the caller may write."""
        return np.maximum(self.plain, self.mirror) if self.mirror is not None else self.plain.copy()


def frame_products(q: VideoFeatures, s: VideoFeatures, q_mirror: np.ndarray | None = None
                   ) -> FrameProducts | None:
    """The pair's products, or None when either side has no frame vectors (or they differ in width)."""
    qe, se = np.asarray(q.embeddings), np.asarray(s.embeddings)
    if qe.ndim != 2 or se.ndim != 2 or not len(qe) or not len(se) or qe.shape[1] != se.shape[1]:
        return None
    mirror = q_mirror @ se.T if q_mirror is not None and len(q_mirror) else None
    return FrameProducts(qe @ se.T, mirror)


def all_products(q: VideoFeatures, candidates: dict[str, VideoFeatures], q_mirror: np.ndarray | None = None,
                 keep_cells: int = KEEP_CELLS) -> dict[str, FrameProducts]:
    """Every candidate's products when they fit in ``keep_cells``, else none (the callers then
    compute each as they need it)."""
    sides = 2 if q_mirror is not None and len(q_mirror) else 1
    cells = len(q.embeddings) * sum(len(s.embeddings) for s in candidates.values()) * sides
    if cells > keep_cells:
        return {}
    out = {v: frame_products(q, s, q_mirror) for v, s in candidates.items()}
    return {v: p for v, p in out.items() if p is not None}
