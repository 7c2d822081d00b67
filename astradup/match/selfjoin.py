"""KNN for a batch of indexed videos searched together (the dedup job's self-join).

One search per video costs one Milvus round trip per modality and scores every candidate in full;
at library scale the job is that loop. A batch instead sends the rows of all its videos in one
request, with the batch's own videos filtered out on the server, and finds the neighbours *inside*
the batch here by exact inner products (a few thousand rows: one matrix product). Merging the two
gives each row what a search of its video alone would have found (every other indexed row), with
no self hits.

A candidate that none of a video's rows came close to cannot produce a labelled match, a copied
segment or a copied soundtrack (``exact_floors`` says why), so ``prune`` leaves it out before its
features are even fetched, with a margin for the Milvus copy's projected similarities, and
``could_match`` checks the full vectors before the full scoring (the expensive part).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from astradup.match.common import match_floor

# How far below the per-cell match similarity a candidate's best neighbour may sit and still be
# scored in full: the projected vectors in Milvus (vectors.projection) move similarities by a few
# hundredths; 0.1 is several times that.
PRUNE_MARGIN = 0.1
CHUNK_CELLS = 16 * 1024 * 1024  # similarities computed at once by exact_knn (float32: 64 MB)


@dataclass(frozen=True)
class Rows:
    """Searchable rows of several videos: vectors [N, D], the owning video of each row, its time."""

    vectors: np.ndarray
    owners: np.ndarray  # [N] str
    times: np.ndarray  # [N] float

    @classmethod
    def stack(cls, parts: list[tuple[str, np.ndarray, np.ndarray]], dim: int) -> "Rows":
        """(video id, vectors, times) per video -> one Rows (videos without rows add nothing)."""
        parts = [(v, np.asarray(x, np.float32).reshape(-1, dim), np.asarray(t, np.float64).reshape(-1))
                 for v, x, t in parts]
        parts = [p for p in parts if len(p[1])]
        if not parts:
            return cls(np.zeros((0, dim), np.float32), np.zeros(0, dtype=object), np.zeros(0))
        return cls(np.concatenate([x for _, x, _ in parts]),
                   np.concatenate([np.full(len(x), v, dtype=object) for v, x, _ in parts]),
                   np.concatenate([t for _, _, t in parts]))


def exact_knn(queries: np.ndarray, query_owners: np.ndarray, index: Rows, k: int
              ) -> list[list[tuple[str, float, float]]]:
    """Per query row: the ``k`` best (video id, t, inner product) among ``index`` rows of *other*
    videos than the row's own, best first (equal similarities: the earlier index row first)."""
    q = np.asarray(queries, np.float32)
    if not len(q) or not len(index.vectors) or k < 1:
        return [[] for _ in range(len(q))]
    # owners as integer codes: comparing object arrays of ids cell by cell cost more than the product
    _, codes = np.unique(np.concatenate([np.asarray(index.owners, dtype=object),
                                         np.asarray(query_owners, dtype=object)]).astype(str),
                         return_inverse=True)
    own_index, own_query = codes[:len(index.vectors)], codes[len(index.vectors):]
    kk = min(k, len(index.vectors))
    out: list[list[tuple[str, float, float]]] = []
    step = max(1, CHUNK_CELLS // len(index.vectors))  # the similarity block stays ~64 MB
    for lo in range(0, len(q), step):
        sim = q[lo:lo + step] @ index.vectors.T
        sim[own_query[lo:lo + step, None] == own_index[None, :]] = -np.inf
        top, vals = top_k(sim, kk)
        # one conversion per block, not a numpy scalar per hit: a batch has tens of thousands of rows
        for own, ts, vs in zip(index.owners[top].tolist(), index.times[top].tolist(), vals.tolist()):
            out.append([(str(o), t, v) for o, t, v in zip(own, ts, vs) if math.isfinite(v)])
    return out


TOP_K_BLOCK = 16  # columns per block in top_k's first pass


def top_k(sim: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``sim`` [R, N], the columns of its ``k`` largest values and the values, best
    first, equal values by column (1 <= k <= N).

    The columns are dealt into blocks of TOP_K_BLOCK (block j: columns j, j + N/B, j + 2N/B, ...,
    so that the block maxima are B whole-row maxima of contiguous slices, and the last N mod B
    columns form one more block). A row's k largest values lie in the k blocks with the largest
    maxima: a block holding one of them has a maximum at least the k-th largest value, which is at
    least the k-th largest block maximum. So the selection runs over the block maxima, then over
    those k blocks' columns: a 16th of the partition work of selecting among all N columns, which
    was most of the dedup join's in-batch KNN."""
    r, n = sim.shape
    b = TOP_K_BLOCK
    nb = n // b
    if nb <= 4 * k:  # too few blocks to gain: the k largest directly
        cols = np.argpartition(-sim, k - 1, axis=1)[:, :k] if k < n else np.broadcast_to(np.arange(n), (r, n))
        vals = np.take_along_axis(sim, cols, axis=1)
    else:
        m = nb * b
        bmax = sim[:, :m].reshape(r, b, nb).max(axis=1)
        if m < n:
            bmax = np.concatenate([bmax, sim[:, m:].max(axis=1, keepdims=True)], axis=1)
        best = np.argpartition(-bmax, k - 1, axis=1)[:, :k, None]
        cols = np.where(best < nb, best + nb * np.arange(b), m + np.arange(b)).reshape(r, -1)
        vals = np.take_along_axis(sim, np.minimum(cols, n - 1), axis=1)
        vals[cols >= n] = -np.inf  # the last block is short
    # best first, ties by column: one lexsort over the (few) kept columns per row
    order = np.lexsort((cols, -vals), axis=1)[:, :k]
    cols, vals = np.minimum(np.take_along_axis(cols, order, axis=1), n - 1), np.take_along_axis(vals, order, axis=1)
    if k < n:
        # a value equal to the k-th may also sit among the columns left out: those rows (exact
        # copies tie) are sorted whole, so the earlier columns win as in a full sort
        kth = vals[:, -1:]
        tied = np.flatnonzero((sim >= kth).sum(axis=1) > (vals >= kth).sum(axis=1))
        if len(tied):
            cols[tied] = np.argsort(-sim[tied], axis=1, kind="stable")[:, :k]
            vals[tied] = np.take_along_axis(sim[tied], cols[tied], axis=1)
    return cols, vals


def merge_hits(a: list[list[tuple]], b: list[list[tuple]], k: int) -> list[list[tuple]]:
    """Row by row, the ``k`` best of two hit lists (tuples end with the score)."""
    return [sorted(x + y, key=lambda h: -h[-1])[:k] for x, y in zip(a, b)]


def best_per_video(hits: list[list[tuple]]) -> dict[str, float]:
    """The best score each video reached over all rows."""
    best: dict[str, float] = {}
    for row in hits:
        for h in row:
            if h[-1] > best.get(h[0], float("-inf")):
                best[h[0]] = float(h[-1])
    return best


def prune(candidates: list[str], visual_best: dict[str, float], audio_best: dict[str, float],
          visual_floor: float, audio_floor: float) -> list[str]:
    """The candidates whose best visual or audio neighbour reached its floor, order kept."""
    return [c for c in candidates
            if visual_best.get(c, -1.0) >= visual_floor or audio_best.get(c, -1.0) >= audio_floor]


@dataclass(frozen=True)
class Floors:
    """What a pair must show, on its full vectors, to be reportable at all (``exact_floors``)."""

    coverage: float  # mutual best-match coverage of frame embeddings (the whole-video evidence)
    cell: float  # a frame pair's similarity that makes a segment cell
    cells: int  # query frames with such a cell that the shortest segment needs
    audio: float  # an audio window pair's similarity that can count at all

    @property
    def visual_hit(self) -> float:
        """The lowest frame similarity that can matter: a KNN hit below it is no lead."""
        return min(self.coverage, self.cell)


def floors(score, segments, fps: float = 1.0) -> tuple[float, float]:
    """(visual, audio) floors for the KNN hits' similarities (projected vectors in Milvus, which
    move similarities by a few hundredths): what ``exact_floors`` allows, less the margin."""
    f = exact_floors(score, segments, fps)
    return f.visual_hit - PRUNE_MARGIN, f.audio - PRUNE_MARGIN


def exact_floors(score, segments, fps: float = 1.0) -> Floors:
    """Below these a pair is provably unreportable. Whole-video: a mutual coverage under
    ``score.emb_lo`` calibrates the embedding evidence to 0, so visual <= 0.5 (pHash lifts it at
    most halfway) and the fused score stays under ``similar`` whatever audio and metadata say
    (0.65 x 0.5 + 0.25 + 0.10 = 0.675). Segments: the shortest one (``min_len`` seconds, at least
    ``min_density`` of them matched) needs that many query frames (at ``fps``) with a cell. Audio
    (segments, a copied soundtrack): a window pair at the lower of what calibrates above 0 and
    what makes an audio cell."""
    c = segments.cell_threshold
    cells = max(1, math.ceil(segments.min_len * segments.min_density * fps - 1e-9))
    return Floors(coverage=score.emb_lo, cell=match_floor(segments.visual_lo, segments.visual_hi, c), cells=cells,
                  audio=min(score.audio_vec_lo, match_floor(segments.audio_lo, segments.audio_hi, c)))


def _visual_possible(sim: np.ndarray, f: Floors) -> bool:
    if not sim.size:
        return False
    best_q = sim.max(axis=1)
    if min(float(best_q.mean()), float(sim.max(axis=0).mean())) >= f.coverage:
        return True
    return int((best_q >= f.cell).sum()) >= f.cells


def could_match(q_emb: np.ndarray, s_emb: np.ndarray, q_audio: np.ndarray, s_audio: np.ndarray, f: Floors,
                q_mirror: np.ndarray | None = None,
                products: tuple[np.ndarray, np.ndarray | None] | None = None) -> bool:
    """Whether two videos' full vectors (informative frames, as scoring uses them) pass
    ``exact_floors``: one matrix product per modality, against the full scoring's dozens of
    milliseconds. Videos without embeddings are never ruled out (nothing to decide on).
    ``products``: (``q_emb @ s_emb.T``, ``q_mirror @ s_emb.T`` or None) when the caller has them."""
    if not len(q_emb) or not len(s_emb):
        return True
    plain, flip = products if products is not None else (q_emb @ s_emb.T, None)
    if _visual_possible(plain, f):
        return True
    if q_mirror is not None and len(q_mirror):
        if _visual_possible(flip if flip is not None else q_mirror @ s_emb.T, f):
            return True
    return bool(len(q_audio) and len(s_audio) and float((q_audio @ s_audio.T).max()) >= f.audio)
