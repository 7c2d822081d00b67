"""The query's rows as scoring sees them: sample spacing, window centres, the rows outside the
common segments (for the votes' pruning and for the pitch variants), the cheap could-they-match
test, which windows' pitch variants the KNN asks for, and the dimension check; pure numpy,
shared by ``Searcher``'s KNN and scoring halves."""
from __future__ import annotations

import numpy as np

from astradup.errors import ConfigError
from astradup.match.common import CommonSegment, common_windows, inside
from astradup.match.products import FrameProducts
from astradup.match.scoring import informative_rows
from astradup.match.selfjoin import could_match
from astradup.records import VideoFeatures


def step(times: np.ndarray, default: float = 1.0) -> float:
    """The median spacing of sorted sample times (one frame or window stands for that much)."""
    t = np.sort(np.asarray(times, np.float64).reshape(-1))
    return float(np.median(np.diff(t))) if len(t) > 1 else default


def window_centres(f: VideoFeatures) -> np.ndarray:
    return np.asarray(f.audio_windows, np.float64).reshape(-1, 2).mean(axis=1)


def outside(hits: list, times: np.ndarray, common: list[CommonSegment]) -> list:
    """The rows' hits, common rows' emptied: what is left to say whether a candidate came close."""
    if not common:
        return hits
    m = inside(times, common)
    return [[] if c else h for h, c in zip(hits, m)]


def could_match_rows(q: VideoFeatures, s: VideoFeatures, mirror: np.ndarray | None, pitch: np.ndarray | None,
                     bar, products: FrameProducts | None = None) -> bool:
    """``could_match`` on the rows scoring uses: informative and not common (``informative``), the
    pitch variants' windows as more query windows; ``products``: the pair's frame products."""
    qm = informative_rows(q)
    sm = informative_rows(s)
    q_mir = mirror[qm] if mirror is not None and len(mirror) else None
    qa = np.asarray(q.audio_vectors)
    if pitch is not None and len(pitch) and len(qa):
        qa = np.concatenate([qa, np.asarray(pitch, qa.dtype).reshape(-1, qa.shape[1])])
    sub = None
    if products is not None and len(q.embeddings) and len(s.embeddings):
        # the rows and columns kept; every one (no blank or common frame) is the product itself,
        # not a copy of it: on a long video the copies cost more than the test
        if isinstance(qm, slice) and isinstance(sm, slice):
            cells: tuple = (qm, sm)
        else:
            cells = np.ix_(_index(qm, len(q.embeddings)), _index(sm, len(s.embeddings)))
        sub = (products.plain[cells], products.mirror[cells] if products.mirror is not None else None)
    return could_match(q.embeddings[qm], s.embeddings[sm], qa, s.audio_vectors, bar, q_mir, sub)


def _index(m: np.ndarray | slice, n: int) -> np.ndarray:
    return np.arange(n) if isinstance(m, slice) else np.asarray(m)


def pitch_outside(f: VideoFeatures, pitch: np.ndarray | None, common: list[CommonSegment] | tuple
                  ) -> np.ndarray | None:
    """The pitch variants' rows for the windows ``match/common.mask_pair`` keeps: it removes the
    query's windows inside the common segments, and row w of a variant must stay window w."""
    if pitch is None or not len(pitch) or not common:
        return pitch
    removed = common_windows(f, list(common))
    if np.shape(pitch)[1] != len(removed):
        return None
    return np.asarray(pitch)[:, ~removed]


def check_dims(q: VideoFeatures, s: VideoFeatures) -> None:
    """A query embedded with other settings than the index cannot be scored against it: say so
    (Catalog.check_frame_dim) instead of failing inside the scorer."""
    dq, ds = np.asarray(q.embeddings).shape, np.asarray(s.embeddings).shape
    if len(dq) == 2 and len(ds) == 2 and dq[0] and ds[0] and dq[1] != ds[1]:
        raise ConfigError(f"{s.video_id} was indexed with {ds[1]}-d frame vectors and the query has {dq[1]}-d: "
                          "the index and the queries must use the same embedder settings (embedder.model, "
                          "embedder.pca_dims)")


def heard(hits: list, gate: float) -> np.ndarray:
    """Per row, whether its best hit reaches ``gate`` (hits as the KNN returns them, similarity last)."""
    return np.array([max((x[-1] for x in h), default=-np.inf) >= gate for h in hits], bool)


def pitch_rows(n_win: int, stride: int, ask: np.ndarray | None = None) -> np.ndarray:
    """The windows whose pitch variants the KNN is asked for: every ``stride``-th (5 s windows every
    0.5 s overlap by 90%), and of those only where ``ask``."""
    rows = np.arange(0, n_win, stride)
    return rows if ask is None else rows[np.asarray(ask, bool)[rows]]


def knn_variants(pitch: np.ndarray, shifts: tuple[float, ...], knn: tuple[float, ...]) -> np.ndarray:
    """The [V', W, D] pitch variants the KNN asks: those of ``pitch`` (one per ``shifts`` entry) whose
    shift ``knn`` names. Every reading helps the alignment, but each asked variant costs the KNN half
    the query's windows again, and the coarse shifts already make the source a candidate. A query
    made under other settings (a fingerprint with another count of variants) asks all of its own."""
    if len(pitch) != len(shifts):
        return pitch
    return pitch[[i for i, s in enumerate(shifts) if s in knn]]


def spread_rows(hits: list, rows: np.ndarray, n_var: int, n_win: int) -> list:
    """Hits of ``n_var`` variants x ``rows`` (each variant's rows in turn) as n_var x n_win lists,
    row w of each the hits of window w, empty for a window not asked."""
    out: list = [[] for _ in range(n_var * n_win)]
    for j, h in enumerate(hits):
        out[(j // len(rows)) * n_win + int(rows[j % len(rows)])] = h
    return out
