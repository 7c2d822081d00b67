"""Whether a query moves with its source along a line: the check that tells a copy from look-alike footage.

Pure numpy on the frame embeddings; match/align.py calls it for every visual piece, and tries many
lines at once over one span when the best-voted line fails (``lines_motion``).
"""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Line(Protocol):
    """A query span and the line that maps it onto the source (align.Piece is one)."""

    q_start: float
    q_end: float
    slope: float
    offset: float


def query_steps(q_emb: np.ndarray, tq: np.ndarray, q_start: float, q_end: float, lag: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """(rows i, q_emb[i + lag] - q_emb[i]) of the steps inside [q_start, q_end]: the query's side of
    :func:`motion_agreement`, the same for every line tried over one span (``_realigned``)."""
    tq = np.asarray(tq)
    i = np.arange(max(len(tq) - lag, 0))
    i = i[(tq[i] >= q_start) & (tq[i] <= q_end) & (tq[i + lag] <= q_end)]
    return i, q_emb[i + lag] - q_emb[i]


def motion_agreement(q_emb: np.ndarray, s_emb: np.ndarray, tq: np.ndarray, ts: np.ndarray, p: Line,
                     lag: int = 3, min_motion: float = 0.15,
                     steps: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[float, int]:
    """Mean cosine between how the query and the source change over ``lag`` samples along the
    piece's line, and how many steps had visible change on both sides. ``steps``: the query's side
    (:func:`query_steps` over the piece's span) when the caller tries many lines over one span.

    Look-alike footage (the same static camera at another time, another pan over a similar
    picture) is similar frame by frame, but its changes are not the same changes: a true copy
    moves with its source (cosine >= 0.55 over 3 s with SSCD on the dev benchmark), a look-alike
    does not (<= 0.13, one outlier at 0.42).
    """
    steps = steps if steps is not None else query_steps(q_emb, np.asarray(tq), p.q_start, p.q_end, lag)
    means, counts = lines_motion(s_emb, tq, ts, steps, lag, p.slope, np.array([p.offset]), min_motion)
    return float(means[0]), int(counts[0])


def _nearest_any(ts: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Index of the ``ts`` value nearest each ``x`` (the first on ties), by brute force."""
    return np.abs(ts[None, None, :] - x[..., None]).argmin(axis=-1)


def nearest(ts: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Index of the ``ts`` value nearest each ``x``, for sorted ``ts`` (two or more) by binary
    search; for strictly increasing ``ts`` the same indices as ``_nearest_any`` (the lower
    neighbour on a tie, as argmin's first), without the [lines, steps, frames] table that
    made a long video's scoring take seconds."""
    hi = np.clip(left_of(ts, x), 1, len(ts) - 1)
    lo = hi - 1
    return np.where(np.abs(ts[lo] - x) <= np.abs(ts[hi] - x), lo, hi)


LEFT_OF_MIN = 8192  # values from which ``left_of`` computes rather than searches (crossover ~5 000 measured)


def left_of(ts: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``np.searchsorted(ts, x, side="left")`` for strictly increasing ``ts``. Frame times are an even
    grid, so each index is first computed from the spacing and then checked (``ts[g - 1] < x <=
    ts[g]`` holds for the searched index alone); the few that fail, and a grid that is not even, are
    searched. A binary search per value was most of ``lines_motion`` on a long pair (x1.7 at 16 000 values)."""
    x = np.asarray(x)
    n = len(ts)
    if x.size < LEFT_OF_MIN or n < 2:  # a binary search of a few values costs less than the set-up
        return np.searchsorted(ts, x, side="left")
    gaps = np.diff(ts)
    step = (float(ts[-1]) - float(ts[0])) / (n - 1)
    if step <= 0 or float(gaps.max() - gaps.min()) > 1e-4 * step:
        return np.searchsorted(ts, x, side="left")
    guess = np.clip(np.ceil((x - ts[0]) / step), 0, n)
    g = np.where(np.isfinite(guess), guess, 0).astype(np.int64)
    ok = ((g == n) | (ts[np.minimum(g, n - 1)] >= x)) & ((g == 0) | (ts[np.maximum(g - 1, 0)] < x))
    if not ok.all():
        g[~ok] = np.searchsorted(ts, x[~ok], side="left")
    return g


def step_products(steps: tuple[np.ndarray, np.ndarray], s_emb: np.ndarray) -> np.ndarray:
    """[steps, source frames] inner products of each query step with each source frame: with them a
    line's step dot products are two look-ups (``dq . (s[j2] - s[j]) = P[n, j2] - P[n, j]``), one
    matrix product per span however many lines are tried over it."""
    return steps[1] @ np.asarray(s_emb).T


# Source frame pairs a StepNorms table holds at most (float64: 32 MB); a longer source computes each
# call's pairs apart (``np.unique``), as every call did before the table.
STEP_NORMS_MAX_CELLS = 1 << 22


class StepNorms:
    """``||s[j2] - s[j]||`` of source frame pairs, each computed once however many lines and slopes
    use it. ``_realigned`` tries every slope over a span, and one pair's step length is asked again
    by many lines: finding the distinct pairs of each call by ``np.unique`` (a sort of every
    [lines, steps] cell) was a third of ``lines_motion`` on a long near-duplicate pair. A pair's
    value is the same float either way (its own row's norm), so every mean is unchanged."""

    def __init__(self, s_emb: np.ndarray) -> None:
        self.s = np.asarray(s_emb)
        self.n = len(self.s)
        self.table: np.ndarray | None = None  # made by the first call with enough pairs to pay for it

    def _norms(self, keys: np.ndarray) -> np.ndarray:
        return np.linalg.norm(self.s[keys % self.n] - self.s[keys // self.n], axis=1).astype(np.float64)

    def __call__(self, j: np.ndarray, j2: np.ndarray) -> np.ndarray:
        """The step lengths of the pairs (``j[k]``, ``j2[k]``), in their shape."""
        keys = j.astype(np.int64) * self.n + j2
        cells = self.n * self.n
        if self.table is None and (cells > STEP_NORMS_MAX_CELLS or keys.size * 8 < cells):
            # one line's check (``motion_agreement``) asks a few hundred pairs: no table for them
            pairs, inv = np.unique(keys, return_inverse=True)
            return self._norms(pairs)[inv.reshape(keys.shape)]
        if self.table is None:
            self.table = np.full(cells, np.nan)
        missing = keys[np.isnan(self.table[keys])]
        if len(missing):
            mark = np.zeros(len(self.table), bool)
            mark[missing] = True
            new = np.flatnonzero(mark)
            self.table[new] = self._norms(new)
        return self.table[keys]


def lines_motion(s_emb: np.ndarray, tq: np.ndarray, ts: np.ndarray, steps: tuple[np.ndarray, np.ndarray],
                 lag: int, slope: float, offsets: np.ndarray, min_motion: float = 0.15, chunk: int = 256,
                 products: np.ndarray | None = None, norms: StepNorms | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`motion_agreement` of the lines ``(slope, offsets[k])`` over one span, all at once:
    (mean cosines, NaN where none moved; step counts). ``_realigned`` tries hundreds of lines per
    span of a long video; ``products`` (:func:`step_products` of this span) makes each line cost
    look-ups instead of a [steps, dims] difference, and a source-frame pair's step length is
    computed once for all lines that use it (``norms``: a span's StepNorms, shared by its slopes)."""
    tq, ts = np.asarray(tq), np.asarray(ts)
    i, dq = steps
    means, counts = np.full(len(offsets), np.nan), np.zeros(len(offsets), np.int64)
    if not len(i) or not len(ts) or not len(offsets):
        return means, counts
    x1, x2 = slope * tq[i], slope * tq[i + lag]
    nq = np.linalg.norm(dq, axis=1).astype(np.float64)
    find = nearest if len(ts) >= 2 and bool(np.all(ts[1:] > ts[:-1])) else _nearest_any
    if products is None and len(offsets) > 1:
        products = step_products(steps, s_emb)
    rows = np.arange(len(i))[None, :]
    norms = norms if norms is not None else StepNorms(s_emb)
    for a in range(0, len(offsets), chunk):
        off = np.asarray(offsets[a:a + chunk]).astype(x1.dtype)[:, None]
        j = find(ts, x1[None, :] + off)
        j2 = find(ts, x2[None, :] + off)
        ns = norms(j, j2)  # [lines, steps]
        if products is not None:
            dots = (products[rows, j2] - products[rows, j]).astype(np.float64)
        else:
            dots = np.einsum("nd,lnd->ln", dq, s_emb[j2] - s_emb[j]).astype(np.float64)
        moving = (nq[None, :] > min_motion) & (ns > min_motion)
        n = moving.sum(axis=1)
        total = np.where(moving, dots / np.where(moving, nq[None, :] * ns, 1.0), 0.0).sum(axis=1)
        means[a:a + len(off)] = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        counts[a:a + len(off)] = n
    return means, counts
