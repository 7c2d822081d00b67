"""Common segments: content that recurs across many library videos (a channel intro, a sponsor
clip, a test card).

Such a stretch matches every video that carries it, so two unrelated videos that share only the
intro would look like partial copies of each other, and in a library where one intro opens
hundreds of videos every search would list them all. It is recognised by how many *distinct*
library videos the KNN neighbours of one query row (frame or audio window) come from at
match-level similarity: a copied stretch has one source (or a handful of copies of it), a common
one has many. Videos that match most of the query are its copies, not sharers of a stretch, and
are not counted: a video copied many times over is still found as a copy.

Contiguous common query rows become ``CommonSegment``s (reported once per search, with how many
videos they match), and their rows are left out of the evidence of every candidate: the whole-video
scores and the alignment. Pure numpy, no Ray or Milvus, so every rule here tests fast.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from astradup.records import VideoFeatures

COMMON_FRAMES = "common_frames"  # meta key: frame rows left out of the evidence (see scoring.informative)


@dataclass(frozen=True)
class CommonSegment:
    """A stretch of the query that recurs in ``videos`` library videos (the most any of its rows matched)."""

    q_start: float
    q_end: float
    videos: int
    modalities: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"q_start": self.q_start, "q_end": self.q_end, "videos": self.videos,
                "modalities": list(self.modalities)}


def match_floor(lo: float, hi: float, cell_threshold: float) -> float:
    """The raw similarity at which one row pair is match evidence for the alignment
    (``cell_threshold`` of the way from lo to hi, as in match/align.py)."""
    return lo + cell_threshold * (hi - lo)


def row_videos(hits_per_row: Sequence[Sequence[tuple]], floor: float) -> list[set[str]]:
    """Per query row, the distinct videos among its neighbours at or above ``floor``
    (hit tuples start with the video id and end with the similarity)."""
    return [{h[0] for h in row if float(h[-1]) >= floor} for row in hits_per_row]


def covering_videos(videos_per_row: Sequence[set[str]], max_cover: float) -> set[str]:
    """Videos that match at least ``max_cover`` of the query's rows: copies of the query (or the
    query of them), whose matches say nothing about content being common."""
    n = len(videos_per_row)
    if n == 0:
        return set()
    counts: dict[str, int] = {}
    for vids in videos_per_row:
        for v in vids:
            counts[v] = counts.get(v, 0) + 1
    return {v for v, c in counts.items() if c >= max_cover * n}


@dataclass(frozen=True, eq=False)  # holds an array: compared by identity
class Support:
    """What makes a row's match with a video count as recurring content rather than chance.

    Recurring content is a stretch that every video carrying it matches in order: rows
    ``min_sep`` seconds and more apart find it at one offset (source time minus query time, within
    ``tol``: the index keeps every n-th row). A chance look-alike does not, and the number of those
    a row reaches grows with the library (5 s MFCC summaries of unrelated music; measured in
    docs/scaling.md). Two kinds of look-alike have to be told apart from a stretch:
    - a video that sounds like the query throughout matches many rows at scattered offsets, so
      some pair of its matches agrees by chance: a match is supported only if at least ``share``
      of the other rows (``min_sep`` to ``span`` seconds away) where the video matches agree with
      its offset;
    - one generic window matched by consecutive, overlapping query windows has an offset that
      drifts with the query time, so rows closer than ``tol`` would agree: they never support.
    """

    times: np.ndarray  # per query row, its time (frame time or window centre)
    min_sep: float
    tol: float
    share: float = 0.5
    span: float = 15.0


def hit_time(h: tuple) -> float:
    """A hit's time in its video: a frame's ``t``, an audio window's centre (only differences
    between hits of one video are used, so a start instead is as good)."""
    return (float(h[1]) + float(h[-2])) / 2.0


_BLOCK = 256  # entries judged at once: memory is a block times the entries within ``span`` of it


def _supported(e: np.ndarray, sp: Support) -> np.ndarray:
    """Per entry (row, query time, source time) of one video: whether ``Support`` holds for it.
    Entries are taken in query-time order, a block at a time against the entries within ``span``
    of it, so a video matching every row many times (a copy of a long query) costs time and memory
    in proportion to its entries, not their square."""
    order = np.argsort(e[:, 1], kind="stable")
    e = e[order]
    q = e[:, 1]
    sep = max(sp.min_sep, sp.tol + 1e-6)
    out = np.zeros(len(e), bool)
    for b0 in range(0, len(e), _BLOCK):
        blk = e[b0:b0 + _BLOCK]
        lo, hi = np.searchsorted(q, blk[0, 1] - sp.span, "left"), np.searchsorted(q, blk[-1, 1] + sp.span, "right")
        near = e[lo:hi]
        dq = blk[:, 1][:, None] - near[:, 1][None, :]
        ring = (np.abs(dq) >= sep) & (np.abs(dq) <= sp.span)
        agree = ring & (np.abs(blk[:, 2][:, None] - near[:, 2][None, :] - dq) <= sp.tol)
        # one query row's entries sit together (sorted by time): distinct rows = groups with any
        starts = np.flatnonzero(np.r_[True, np.diff(near[:, 1]) != 0])
        n_ring = np.logical_or.reduceat(ring, starts, axis=1).sum(axis=1)
        n_agree = np.logical_or.reduceat(agree, starts, axis=1).sum(axis=1)
        out[b0:b0 + len(blk)] = (n_agree >= 1) & (n_agree >= sp.share * n_ring)
    res = np.zeros(len(e), bool)
    res[order] = out
    return res


def supported_videos(hits_per_row: Sequence[Sequence[tuple]], floor: float, support: Support,
                     skip: set[str] | frozenset = frozenset()) -> list[set[str]]:
    """``row_videos`` keeping, per row, only the videos whose match there is supported (``Support``);
    the videos in ``skip`` (the query's copies, which no count takes) are not judged."""
    t = np.asarray(support.times, np.float64).reshape(-1)
    index: dict[str, int] = {}  # video -> its number, in order of first match
    entries: list[tuple[int, float, float, int]] = []
    for i, row in enumerate(hits_per_row):
        for h in row:
            if float(h[-1]) >= floor and h[0] not in skip:
                entries.append((i, float(t[i]), hit_time(h), index.setdefault(h[0], len(index))))
    out: list[set[str]] = [set() for _ in hits_per_row]
    if len(entries) < 2:
        return out
    e = np.asarray(entries, np.float64)
    # every video's entries judged at once: its query times moved beyond every other video's span
    gap = float(e[:, 1].max() - e[:, 1].min()) + 2 * support.span + 1.0
    shifted = np.column_stack([e[:, 0], e[:, 1] + e[:, 3] * gap, e[:, 2]])
    vids = list(index)
    for r, k in e[_supported(shifted, support)][:, [0, 3]].astype(int):
        out[r].add(vids[k])
    return out


def common_rows(hits_per_row: Sequence[Sequence[tuple]], floor: float, min_videos: int,
                max_cover: float, support: Support | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mask, counts): the rows whose neighbours at ``floor`` come from at least ``min_videos``
    distinct videos, not counting the videos that cover the query (nor, with ``support``, those
    whose match is not supported); counts per row. ``min_videos`` 0 turns the rule off (no row is
    common)."""
    per_row = row_videos(hits_per_row, floor)
    copies = covering_videos(per_row, max_cover)
    if support is not None:
        per_row = supported_videos(hits_per_row, floor, support, copies)
    counts = np.asarray([len(v - copies) for v in per_row], dtype=np.int64)
    if min_videos <= 0:
        return np.zeros(len(counts), bool), counts
    return counts >= min_videos, counts


def may_be_common(hits_per_row: Sequence[Sequence[tuple]], floor: float, min_videos: int, max_cover: float,
                  videos: Sequence[tuple[np.ndarray, Support | None]] = ()) -> list[int]:
    """Rows whose first KNN answer leaves the count open, so they need more neighbours: the
    ``min_videos``-th hit reaches ``floor`` (a row short of that has every video at the floor in
    hand), and where the row's video has a ``Support`` some match there other than the query's
    copies is supported (a row whose look-alikes are all chance reads as chance with more of them;
    in a large library nearly every audio window has ``min_videos`` look-alikes). ``videos``: per
    query video, its rows and Support (default: all rows one video's, without support)."""
    if min_videos <= 0:
        return []
    out: list[int] = []
    for rows, support in videos or [(np.arange(len(hits_per_row)), None)]:
        sub = [hits_per_row[i] for i in rows]
        open_ = [j for j, h in enumerate(sub) if len(h) >= min_videos and float(h[min_videos - 1][-1]) >= floor]
        if support is not None and open_:
            copies = covering_videos(row_videos(sub, floor), max_cover)
            sup = supported_videos(sub, floor, support, copies)
            open_ = [j for j in open_ if sup[j]]
        out += [int(rows[j]) for j in open_]
    return sorted(out)


def intervals(times: np.ndarray, mask: np.ndarray, counts: np.ndarray, half: float, max_gap: float
              ) -> list[tuple[float, float, int]]:
    """(start, end, most videos) of the runs of masked rows, each row standing for
    [t - half, t + half]; runs closer than ``max_gap`` seconds are one (the Milvus copy keeps every
    n-th frame, so a row between two common ones may find fewer neighbours)."""
    t = np.asarray(times, np.float64).reshape(-1)
    m = np.asarray(mask, bool).reshape(-1)
    c = np.asarray(counts).reshape(-1)
    order = np.argsort(t, kind="stable")
    out: list[tuple[float, float, int]] = []
    for i in order:
        if not m[i]:
            continue
        s, e = max(float(t[i]) - half, 0.0), float(t[i]) + half
        if out and s - out[-1][1] <= max_gap:
            out[-1] = (out[-1][0], max(out[-1][1], e), max(out[-1][2], int(c[i])))
        else:
            out.append((s, e, int(c[i])))
    return out


def merge_segments(visual: list[tuple[float, float, int]], audio: list[tuple[float, float, int]],
                   max_gap: float) -> list[CommonSegment]:
    """Visual and audio runs as one list of segments: overlapping (or nearly touching) runs join,
    keeping the larger count and naming the modalities that found them."""
    tagged = [(s, e, n, "visual") for s, e, n in visual] + [(s, e, n, "audio") for s, e, n in audio]
    tagged.sort(key=lambda x: (x[0], x[1]))
    out: list[list[Any]] = []
    for s, e, n, mod in tagged:
        if out and s - out[-1][1] <= max_gap:
            last = out[-1]
            last[1], last[2] = max(last[1], e), max(last[2], n)
            last[3].add(mod)
        else:
            out.append([s, e, n, {mod}])
    return [CommonSegment(round(s, 2), round(e, 2), int(n), tuple(m for m in ("visual", "audio") if m in mods))
            for s, e, n, mods in out]


def inside(times: np.ndarray, segments: Iterable[CommonSegment]) -> np.ndarray:
    """Mask of the times that fall inside any segment."""
    t = np.asarray(times, np.float64).reshape(-1)
    m = np.zeros(len(t), bool)
    for sg in segments:
        m |= (t >= sg.q_start) & (t <= sg.q_end)
    return m


def source_rows(sim: np.ndarray, common: np.ndarray, floor: float) -> np.ndarray:
    """Columns (source rows) of ``sim`` [query, source] that are the common content: their best
    match among the query's common rows reaches ``floor`` and beats their best match elsewhere.
    The source carries the intro too; left in, its intro frames would only find poor matches in
    the query's other rows and count as missing from a copy."""
    sim = np.asarray(sim)
    c = np.asarray(common, bool).reshape(-1)
    if sim.size == 0 or not c.any():
        return np.zeros(sim.shape[1] if sim.ndim == 2 else 0, bool)
    best_common = sim[c].max(axis=0)
    best_rest = sim[~c].max(axis=0) if (~c).any() else np.full(sim.shape[1], -np.inf)
    return (best_common >= floor) & (best_common >= best_rest)


def _cut_spans(print_: np.ndarray, hz: float, spans: Iterable[tuple[float, float]]) -> np.ndarray:
    """The sub-fingerprints outside ``spans`` (seconds): a shared jingle then adds no equal bits."""
    p = np.asarray(print_)
    if not len(p) or hz <= 0:
        return p
    t = np.arange(len(p)) / hz
    keep = np.ones(len(p), bool)
    for s, e in spans:
        keep &= ~((t >= s) & (t <= e))
    return p[keep]


def without_rows(f: VideoFeatures, frames: np.ndarray, windows: np.ndarray) -> VideoFeatures:
    """``f`` with the given frame rows marked common (scoring.informative leaves them out, the
    alignment neither matches nor counts them as a gap) and the given audio windows, with the
    stretch of soundtrack they span, removed."""
    fr = np.asarray(frames, bool).reshape(-1)
    win = np.asarray(windows, bool).reshape(-1)
    if not fr.any() and not win.any():
        return f
    meta = dict(f.meta)
    if fr.any():
        meta[COMMON_FRAMES] = sorted(set(meta.get(COMMON_FRAMES, [])) | set(np.flatnonzero(fr).tolist()))
    aw = np.asarray(f.audio_windows, np.float32).reshape(-1, 2)
    av = np.asarray(f.audio_vectors)
    chroma = f.chromaprint
    if win.any() and len(win) == len(aw):
        chroma = _cut_spans(f.chromaprint, f.chromaprint_hz, [tuple(w) for w in aw[win]])
        aw, av = aw[~win], av[~win] if len(av) == len(win) else av
    return dataclasses.replace(f, meta=meta, audio_windows=aw, audio_vectors=av, chromaprint=chroma)


def common_windows(f: VideoFeatures, segments: Sequence[CommonSegment]) -> np.ndarray:
    """Mask of ``f``'s audio windows centred inside a segment: the ones ``mask_pair`` removes from a
    query (and search.py removes from its pitch variants, row for row)."""
    w = np.asarray(f.audio_windows, np.float64).reshape(-1, 2)
    return inside(w.mean(axis=1), segments) if len(w) else np.zeros(0, bool)


def mask_pair(q: VideoFeatures, s: VideoFeatures, segments: Sequence[CommonSegment], vis_floor: float,
              aud_floor: float, frame_products: np.ndarray | None = None) -> tuple[VideoFeatures, VideoFeatures]:
    """The query and one candidate with the common content left out of both: the query's rows
    inside the segments, the candidate's rows that are that same content (``source_rows``).
    ``frame_products``: ``q.embeddings @ s.embeddings.T`` when the caller has it (match/products.py)."""
    if not segments:
        return q, s
    q_frames = inside(q.timestamps, segments) if len(q.embeddings) else np.zeros(0, bool)
    q_windows = common_windows(q, segments)
    s_frames = np.zeros(len(s.embeddings), bool)
    if q_frames.any() and len(s.embeddings):
        sim = frame_products if frame_products is not None else np.asarray(q.embeddings) @ np.asarray(s.embeddings).T
        s_frames = source_rows(sim, q_frames, vis_floor)
    s_windows = np.zeros(len(s.audio_vectors), bool)
    if q_windows.any() and len(s.audio_vectors) and len(q.audio_vectors) == len(q_windows):
        s_windows = source_rows(np.asarray(q.audio_vectors) @ np.asarray(s.audio_vectors).T, q_windows, aud_floor)
    return without_rows(q, q_frames, q_windows), without_rows(s, s_frames, s_windows)


def find_common(frame_times: np.ndarray, frame_hits: Sequence[Sequence[tuple]], window_times: np.ndarray,
                window_hits: Sequence[Sequence[tuple]], vis_floor: float, aud_floor: float, min_videos: int,
                max_cover: float, max_gap: float, frame_cell: float = 1.0, window_step: float = 1.0,
                audio_support: Support | None = None) -> list[CommonSegment]:
    """The common segments of one query from its rows' KNN neighbours (frames at ``frame_times``,
    audio windows centred at ``window_times``); with ``audio_support`` a window's match counts
    only when supported."""
    if min_videos <= 0:
        return []
    fm, fc = common_rows(frame_hits, vis_floor, min_videos, max_cover)
    am, ac = common_rows(window_hits, aud_floor, min_videos, max_cover, audio_support)
    vis = intervals(frame_times, fm, fc, frame_cell / 2, max_gap) if len(fm) else []
    aud = intervals(window_times, am, ac, window_step / 2, max_gap) if len(am) else []
    return merge_segments(vis, aud, max_gap)
