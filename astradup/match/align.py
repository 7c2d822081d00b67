"""Temporal alignment: frame/window similarities of one (query, source) pair -> copied segments.

A copy shows up as a line in the (query time, source time) plane: source = slope x query + offset
(slope 1 for a plain copy, 1.1 for a 10% speed-up). Hough-style voting over a small set of slopes
and offsets finds the line with the most evidence; matches near it are split into runs at gaps,
and runs too short or too sparse are dropped. Lines are peeled off one at a time, so a query that
re-uses two parts of the same source yields two segments. Visual and audio evidence are aligned
separately (their time grids differ: 1 s frames vs ~5 s windows) and merged, so a copy with its
audio replaced is still found by sight, and one visually destroyed but with its audio by sound.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from astradup.config import SegmentConfig
from astradup.match.audio_confirm import bounded_by_codes, confirmed, resloped
from astradup.match.line_offset import dense_offsets, path_score, refine_offset
from astradup.match.modalities import heard_earlier, heard_line, merge_close, merge_modalities, overlap, seen_along
from astradup.match.motion import StepNorms, lines_motion, motion_agreement, query_steps, step_products
from astradup.match.piece import Piece
from astradup.records import CodeReading, SegmentMatch

# A slope pays this much path score per query second per unit away from 1 (``_best_line``): after a
# crop of panning footage a wrong slope through the blob of alike frames can out-score the copy's
# line by a few hundredths a second, while a real speed change (1.1) leads by more. Hard seeds 5-9
# LCT 0.725 -> 0.733 (IoU 0.620 -> 0.632), dev40 0.990 either way; 2 and 4 scored the same.
SLOPE_PRIOR = 1.0


def evidence(sim: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((sim - lo) / (hi - lo), 0.0, 1.0)


def _best_line(tq: np.ndarray, ts: np.ndarray, e: np.ndarray, raw: np.ndarray, cfg: SegmentConfig
               ) -> tuple[float, float, float] | None:
    """(slope, offset, path score) of the line that best explains the matched cells, or None.

    Per slope, the offset is voted (Hough); slopes are then compared by the path score: the best
    raw similarity within tolerance of the line, summed over query times. Votes alone favour
    slope 1 on slow content (a pan over a photo matches a blob of source frames, not a line),
    while the path along the true line keeps the highest similarities. (Summing over source times
    too was tried: it favours steep slopes, which cover more source frames, and let look-alike
    footage fit a line.) Slopes away from 1 pay ``SLOPE_PRIOR``; a still shot's tie goes to slope 1.
    """
    best = None
    for slope in cfg.slopes:
        b = ts - slope * tq
        # bins a third of the tolerance wide, counted with their neighbours
        bins = np.floor(b / (cfg.offset_tol / 3)).astype(np.int64)
        lo = bins.min()
        hist = np.bincount(bins - lo, weights=e)
        smooth = hist + np.concatenate([[0], hist[:-1]]) + np.concatenate([hist[1:], [0]])
        k = _peak(smooth, bins - lo, raw)
        sel = np.abs(bins - lo - k) <= 1
        offset = float(np.average(b[sel], weights=e[sel]))
        near = np.abs(b - offset) <= cfg.offset_tol
        score, n_times = path_score(tq[near], raw[near])
        key = (round(score - SLOPE_PRIOR * abs(slope - 1.0) * n_times, 4), -abs(slope - 1.0))
        if best is None or key > best[0]:
            best = (key, slope, offset, score)
    return None if best is None else (best[1], best[2], best[3])


TIE = 1e-6  # votes closer than this are a tie (``_peak``)


def _peak(votes: np.ndarray, bins: np.ndarray, raw: np.ndarray) -> int:
    """The offset bin with the most (smoothed) votes; where several tie, the single bin beside or
    at them whose cells are most similar (``raw`` summed per bin).

    Evidence is clipped at ``visual_hi``, so on a still shot that the source shows for many seconds
    every cell of the block votes 1 and every offset ties; the first bin won, and a 3 s copy of
    seconds 20-23 was reported at 0-3 (hard benchmark seed 9, twice) though each query frame's most
    similar source frame ran along the true line. One bin, not a smoothed three: smoothing joins
    two neighbouring diagonals, and the offset would fall between them."""
    tied = np.flatnonzero(votes >= votes.max() - TIE)
    if len(tied) == 1:
        return int(tied[0])
    near = np.unique(np.clip(np.concatenate([tied - 1, tied, tied + 1]), 0, len(votes) - 1))
    r = np.bincount(bins, weights=raw, minlength=len(votes))
    return int(near[np.argmax(r[near])])


def _fit(tq: np.ndarray, ts: np.ndarray, w: np.ndarray, slope: float, offset: float,
         slopes: tuple) -> tuple[float, float]:
    """Weighted least-squares refinement of the voted line, kept inside the slope range searched;
    the voted slope is only a grid point, and the source bounds come from this line."""
    if len(tq) < 5 or float(tq.max() - tq.min()) < 5.0:
        return slope, float(np.average(ts - slope * tq, weights=w))
    a, b = np.polyfit(tq, ts, 1, w=np.sqrt(w))
    if not (min(slopes) - 0.02 <= a <= max(slopes) + 0.02):
        return slope, offset
    return float(a), float(b)


def best_per_row(qi: np.ndarray, sj: np.ndarray, w: np.ndarray, dist: np.ndarray,
                 raw: np.ndarray | None = None) -> dict[int, tuple[float, int]]:
    """Per query row, (weight, source column) of its cell with the largest ``w - 0.01 * dist``; on
    ties the one most similar (``raw``), then the first: the per-cell loop it replaces, in one
    lexsort (a long pair has 10^5). Weights are clipped at ``visual_hi``, so on a still shot every
    cell weighs 1, and a line voted between two neighbouring diagonals is as far from both: the
    earlier cell had won, putting a 3 s copy of a 4 s shot a second early (hard seed 6; 0.84 there
    against 0.88 on the true line)."""
    key = np.asarray(w, np.float64) - 0.01 * np.asarray(dist, np.float64)
    cand = np.flatnonzero(key > -np.inf)  # the loop's strict ``>`` from -inf never took NaN or -inf
    if not len(cand):
        return {}
    tie = np.zeros(len(cand)) if raw is None else -np.asarray(raw, np.float64)[cand]
    order = cand[np.lexsort((cand, tie, -key[cand], np.asarray(qi)[cand]))]  # by row, key, raw, earlier cell
    rows = np.asarray(qi)[order]
    first = order[np.concatenate([[True], rows[1:] != rows[:-1]])]
    return {int(q): (float(x), int(c)) for q, x, c in zip(np.asarray(qi)[first], np.asarray(w)[first],
                                                            np.asarray(sj)[first])}


def align(tq: np.ndarray, ts: np.ndarray, sim: np.ndarray, lo: float, hi: float, cfg: SegmentConfig,
          cell: float = 1.0, pad: float = 0.0, q_valid: np.ndarray | None = None,
          s_valid: np.ndarray | None = None, edge: float | None = None) -> list[Piece]:
    """Segments from a similarity matrix sim[i, j] between query times tq[i] and source times ts[j].

    ``cell`` is the sampling interval (a frame at t stands for [t - cell/2, t + cell/2]); ``pad``
    widens each end further (audio windows: the sound the matched windows hold, which length and
    ``min_len`` are judged on). ``edge`` (at most ``pad``; None: ``pad``) widens the reported bounds
    instead, except at an end whose matched window is the first or last of its video, where the copy
    may run to the video's edge (``_edges``). A query second comes from at most one place of a
    source, so once a segment is accepted every match inside its query span is spent: slow or
    repetitive content (a pan over a photo, a music loop) would otherwise yield parallel echoes.
    ``q_valid`` marks query times that can carry evidence at all: a fade to black inside a copy is
    neither a match nor a gap.
    """
    if sim.size == 0:
        return []
    q_ok = np.ones(len(tq), bool) if q_valid is None else np.asarray(q_valid, bool)
    e = evidence(sim, lo, hi)
    ii, jj = np.nonzero(e >= cfg.cell_threshold)
    live = np.ones(len(ii), bool)
    t_first, t_last = (tq.min(), ts.min()), (tq.max(), ts.max())  # each video's first and last times
    pieces: list[Piece] = []
    for _ in range(4 * cfg.max_segments):
        if live.sum() < 2 or len(pieces) >= cfg.max_segments:
            break
        i, j = ii[live], jj[live]
        w, raw = e[i, j], sim[i, j]
        line = _best_line(tq[i], ts[j], w, raw, cfg)
        if line is None:
            break
        slope, offset, _ = line
        dist = np.abs(ts[j] - (slope * tq[i] + offset))
        near = dist <= cfg.offset_tol
        if near.sum() < 2:
            break
        # one source match per query time: the strongest on the line; among equals (a still shot
        # matches a whole block equally) the one closest to the line, so the refit follows the line
        best_at = best_per_row(i[near], j[near], w[near], dist[near], raw[near])
        qs = np.array(sorted(best_at))
        # Query times that the line maps onto a blank source frame (a fade in the source) can no
        # more match than blank query frames: neither counts as a gap.
        valid = q_ok.copy()
        if s_valid is not None and len(ts):
            js = np.clip(np.searchsorted(ts, slope * tq + offset), 0, len(ts) - 1)
            valid &= np.asarray(s_valid, bool)[js]
        rank = np.cumsum(valid)
        # a gap is measured in informative seconds between consecutive matches
        gaps = (np.diff(rank[qs]) - 1) * (cell if cell > 0 else 1.0)
        runs = np.split(qs, np.flatnonzero(gaps > cfg.max_gap) + 1)
        spent = near.copy()
        for run in runs:
            if len(run) < 2:
                continue
            q0, q1 = tq[run[0]] - cell / 2 - pad, tq[run[-1]] + cell / 2 + pad
            span = (tq >= tq[run[0]]) & (tq <= tq[run[-1]]) & valid
            density = min(1.0, len(run) / max(int(span.sum()), 1))
            if q1 - q0 < cfg.min_len or density < cfg.min_density:
                continue
            rq = tq[run]
            rs = np.array([ts[best_at[int(r)][1]] for r in run])
            rw = np.array([best_at[int(r)][0] for r in run])
            a, b = _fit(rq, rs, rw, slope, offset, cfg.slopes)
            length_factor = min(1.0, (q1 - q0) / cfg.full_len) if cfg.full_len > 0 else 1.0
            full = float(rw.mean()) * density
            r0, r1 = _edges(q0, q1, pad, edge, (rq[0] <= t_first[0], rs[0] <= t_first[1]),
                            (rq[-1] >= t_last[0], rs[-1] >= t_last[1]))
            pieces.append(Piece(max(float(r0), 0.0), float(r1), max(a * float(r0) + b, 0.0),
                                a * float(r1) + b, full * length_factor, a, b, full=full))
            spent |= (tq[i] >= q0) & (tq[i] <= q1)
        live_idx = np.flatnonzero(live)
        live[live_idx[spent]] = False
    return pieces


def _edges(q0: float, q1: float, pad: float, edge: float | None, first: tuple[bool, bool], last: tuple[bool, bool]
           ) -> tuple[float, float]:
    """A run's reported query bounds: its evidence span ``q0``-``q1`` (widened by ``pad``) drawn in
    to ``edge`` at each end, except an end whose matched window is its video's first (``first``: on
    the query axis, on the source axis) or last (``last``).

    A 5 s audio window still matches when about 3.5 s of it is copied sound, so the outermost
    matched centres sit ~1 s inside the copy, not half a window: padding them by half a window
    reported a 5 s excerpt as 9 s (hard benchmark seeds 5-8, audio-found copies ran 1-3 s long).
    Where a run's outermost window is the first or last of its video, nothing lies beyond it to
    match, so the copy may reach the video's edge and keeps the whole pad (a whole-video copy)."""
    if edge is None or edge >= pad:
        return q0, q1
    return (q0 if any(first) else q0 + pad - edge), (q1 if any(last) else q1 - pad + edge)


def distinctiveness(p: Piece, best: np.ndarray, background: np.ndarray, tq: np.ndarray,
                    valid: np.ndarray | None = None) -> float:
    """Mean, over the piece's query frames, of how much better each matches this source (``best``:
    its best similarity here) than any other candidate (``background``: its best elsewhere).

    Stacked edits (a crop, a flip and a speed change at once) scramble how the embeddings move, so
    motion agreement fails true copies; and a copy of 3-5 s is too short for the length factor.
    What still tells a copy from look-alike footage is that look-alikes resemble several library
    videos about equally (the same photo pack, the same static scene), while a copy's frames resemble
    their source far better than anything else: on the hard benchmark every copy measured >= +0.05
    and every look-alike <= -0.05. A library holding the source twice measures ~0 for both and falls
    back on motion and length as before.
    """
    sel = (tq >= p.q_start) & (tq <= p.q_end)
    if valid is not None:
        sel &= np.asarray(valid, bool)
    if not sel.any():
        return 0.0
    return float(np.mean(best[sel] - background[sel]))


def _checked(p: Piece, embeddings: tuple[np.ndarray, np.ndarray] | None, tq: np.ndarray, ts: np.ndarray,
             cfg: SegmentConfig, distinct: float, best_moving: bool = False, sure: float = 0.0,
             unplaced: bool = False) -> Piece:
    """A visual piece scaled by its motion agreement, and by its length relieved by its
    distinctiveness (``distinct`` already mapped to [0, 1]); undecidable motion (no motion on either
    side, e.g. a still picture) leaves the motion factor out. Distinctiveness does not stand in for
    motion: a source that repeats itself (a slow pan, a loop) offers lines at wrong offsets that are
    just as distinctive, and motion is what tells the true one (``_realigned``). Once motion has
    picked the line (``best_moving``: the best-moving line through its span, moving with the source
    at least somewhat), a distinctive piece no longer needs it to agree fully: stacked edits weaken
    the agreement of true copies too (0.15-0.78 over the hard benchmark's copies). ``sure``
    (distinctiveness past ``distinct_full``, mapped to [0, 1]) then lifts a piece that motion did not
    reject towards 1 (``distinct_lift``); a piece that moves with its source fully, or at all once
    it is past ``distinct_full``, counts its whole distinctiveness as sure. ``unplaced``: no line
    through the span moves with the source better (``_realigned`` found none); a fully ``sure``
    piece then keeps at least ``unplaced_motion`` of its motion factor, since a crop, flip and speed
    change at once can leave a copy's steps uncorrelated with its source's (0.04 along the true line
    of a hard-benchmark copy that matched at 0.80) while nothing else in the library comes near it."""
    static, motion = False, 1.0
    if embeddings is not None and cfg.motion_full > cfg.motion_lo:
        m, n = motion_agreement(embeddings[0], embeddings[1], tq, ts, p, lag=cfg.motion_lag)
        if n < 3:
            static = True
        else:
            motion = float(np.clip((m - cfg.motion_lo) / (cfg.motion_full - cfg.motion_lo), 0.0, 1.0))
            if motion >= 1.0 or (motion > 0 and distinct >= 1.0):
                # Moving with the source rules out the still look-alike that distinctiveness past
                # distinct_full guards against: of 83 pieces on dev40 and hard seeds 5-9 that moved
                # so, none was a look-alike, and three stacked edits leave a copy's frames at 0.6.
                # A piece already past distinct_full needs only to move with it at all (past
                # motion_lo): of the 387 pieces dev40 and hard seeds 5-9 and 11 align, the 17 such
                # were all copies (agreement 0.32-0.54), while the 7 that were not (a still scene
                # many dev40 queries show, wrong lines of copied pairs) moved at most 0.24 with it
                sure = max(sure, distinct)
            if best_moving and motion > 0:
                motion = max(motion, distinct)
            elif unplaced and sure >= 1.0:
                motion = max(motion, cfg.unplaced_motion)
    score = p.score
    if p.full >= 0 and not static:
        # a still picture matched for a few seconds is "the same picture" (a wallpaper pack, a
        # recoloured version of one design), not a copy: only a moving piece is spared its length
        length = p.score / p.full if p.full > 0 else 1.0
        score = p.full * (length + (1.0 - length) * distinct)
    score *= motion
    if score > 0:
        # a still or too-short piece too: 3-5 s cannot show the 3 steps of motion that tell a
        # still picture, and a picture shared by look-alikes is not distinctive
        score += (1.0 - score) * cfg.distinct_lift * sure
    return dataclasses.replace(p, score=score, static=static)


# Distinctiveness a sibling piece needs (``siblings_lifted``): on the hard benchmark every copy
# measured >= +0.05 and every look-alike <= -0.05 (``distinctiveness``).
SIBLING_DISTINCT = 0.05


def siblings_lifted(merged: list[tuple[Piece, tuple[str, ...]]], cfg: SegmentConfig,
                    distinct: Callable[[Piece], float]) -> list[tuple[Piece, tuple[str, ...]]]:
    """A pair's pieces, the visual ones under ``min_score`` lifted to their full evidence when the
    pair already holds a copy scored ``cfg.sibling_from`` or more and the piece's frames match this
    source better than any other candidate (``distinct(piece)`` >= SIBLING_DISTINCT).

    A query that took one stretch of a video often took another. Alone, a second copy of 4 s from a
    photo pan is a still picture too short for motion or length, and recoloured versions of the same
    wallpaper resemble it nearly as well, so it scores 0.38-0.46 and goes unreported; beside a copy
    of the same source found at 0.93-0.99 it is no longer one look-alike among several. On the hard
    benchmark's seeds 5-9 a floor of 0.9 found two such copies and nothing false; 0.8 also lifted two
    pieces of footage the query shares with a source it copied audio from at 0.81 (its hard
    negatives). ``sibling_from`` above 1 turns it off."""
    strong = max((p.score for p, _ in merged), default=0.0)
    if strong < cfg.sibling_from:
        return merged
    return [(dataclasses.replace(p, score=p.full) if mods == ("visual",) and p.score < min(cfg.min_score, p.full)
             and distinct(p) >= SIBLING_DISTINCT else p, mods) for p, mods in merged]


# Steps of visible motion a re-aligned line needs: the search tries every slope and offset, and over
# 3 steps one of them agrees by chance (a distractor's 6 s matched at 0.40 on the dev40 benchmark).
REALIGN_MIN_STEPS = 6

# A span too short for that (a 7 s copy has 4 steps of 3 s) may still be re-aligned by a line with
# SHORT_MIN_STEPS or more when no longer-measured line moves with the source, but it is judged by its
# motion at every lag up to ``motion_lag`` together (``_short_line_moves``): each lag re-reads the same
# seconds, and a chance agreement at 3 s seldom holds at 1 and 2 s. On dev40 and hard seeds 5-9 and 11
# the three copies whose lines reached here moved 0.44-0.49 so (at lag 3 alone 0.47-0.58); the other
# 13 lines (distractors, look-alikes, one copy whose frames do not move with its source) at most
# 0.37 (at lag 3 alone up to 0.51).
SHORT_MIN_STEPS = 4
SHORT_MOTION = 0.42


def _realigned(p: Piece, checked: Piece, check, sim: np.ndarray, tq: np.ndarray, ts: np.ndarray,
               embeddings: tuple[np.ndarray, np.ndarray], cfg: SegmentConfig, cell: float,
               q_valid: np.ndarray | None, s_valid: np.ndarray | None) -> Piece:
    """``checked`` (``p`` after its checks), the copy's own line over the same query seconds, or
    ``p`` checked as ``unplaced`` when no moving line does better.

    The line with the most evidence is not always the copy's: a source that shows one picture for a
    while (a slow pan over a photo, a repeated shot) matches a whole block of query x source cells,
    and after a crop, flip and speed change at once a wrong slope or offset can win the vote. Motion
    then fails it. Rather than drop those query seconds, every line through the span's matched cells
    (each slope searched, offsets where the cells put them) is scored by how well the query moves
    with the source along it; the best moving line that covers the span as densely as a segment must
    is aligned again alone and checked as the best-moving line (``_checked``), and kept if it scores
    higher. Only when that fails is the voted line itself relieved of motion, so on a repeating
    source a moving line still wins over an equally distinctive wrong one.
    """
    if checked.static or checked.score >= p.score * 0.999:
        return checked
    moving = _moving_line(p, check, sim, tq, ts, embeddings, cfg, cell, q_valid, s_valid)
    if moving is None or moving.score <= checked.score:
        moving = check(p, unplaced=True)
    return moving if moving.score > checked.score else checked


def _moving_line(p: Piece, check, sim: np.ndarray, tq: np.ndarray, ts: np.ndarray,
                 embeddings: tuple[np.ndarray, np.ndarray], cfg: SegmentConfig, cell: float,
                 q_valid: np.ndarray | None, s_valid: np.ndarray | None) -> Piece | None:
    """The best moving line through ``p``'s matched cells, aligned alone and checked, or None."""
    rows = np.flatnonzero((tq >= p.q_start) & (tq <= p.q_end))
    e = evidence(sim[rows], cfg.visual_lo, cfg.visual_hi)
    ii, jj = np.nonzero(e >= cfg.cell_threshold)
    if len(ii) < 2:
        return None
    best: tuple[float, float, float] | None = None
    short: tuple[float, float, float] | None = None  # the best line measured over fewer steps
    steps = query_steps(embeddings[0], tq, p.q_start, p.q_end, cfg.motion_lag)
    products, norms = step_products(steps, embeddings[1]), StepNorms(embeddings[1])
    step, t_cells, s_cells = cfg.offset_tol / 3, tq[rows][ii], ts[jj]
    for slope in cfg.slopes:
        resid = s_cells - slope * t_cells
        offsets = dense_offsets(resid, step, ii, len(rows), cfg.min_density)
        means, counts = lines_motion(embeddings[1], tq, ts, steps, cfg.motion_lag, float(slope), offsets,
                                     products=products, norms=norms)
        for off, m, n in zip(offsets, means, counts):
            if n >= REALIGN_MIN_STEPS and (best is None or m > best[0]):
                best = (float(m), float(slope), float(off))
            elif SHORT_MIN_STEPS <= n < REALIGN_MIN_STEPS and (short is None or m > short[0]):
                short = (float(m), float(slope), float(off))
    if (best is None or best[0] <= cfg.motion_lo) and short is not None and short[0] > cfg.motion_lo:
        best = short if _short_line_moves(p, short[1], short[2], tq, ts, embeddings, cfg.motion_lag) else None
    if best is None or best[0] <= cfg.motion_lo:
        return None
    _, slope, off = best
    only = np.zeros_like(sim)
    band = np.abs(ts[None, :] - (slope * tq[rows][:, None] + off)) <= cfg.offset_tol
    only[rows] = np.where(band, sim[rows], 0.0)
    alts = align(tq, ts, only, cfg.visual_lo, cfg.visual_hi, cfg, cell, q_valid=q_valid, s_valid=s_valid)
    if not alts:
        return None
    alone = max(alts, key=lambda a: (a.q_end - a.q_start, a.score))
    # Over a flat stretch (a slow scene under an overlay) the band still holds lines of other
    # slopes, and the evidence vote may pick one that motion did not choose (hard seed 7 q_010:
    # a 10% speed-up re-aligned at slope 1.03, moving 0.42 with its source, against 0.53 along
    # the searched slope 1.15). The span stays the one aligned alone; its line is the better of both.
    own, searched = check(alone, best_moving=True), check(alone.on_line(slope, off), best_moving=True)
    return searched if searched.score > own.score else own


def _short_line_moves(p: Piece, slope: float, offset: float, tq: np.ndarray, ts: np.ndarray,
                      embeddings: tuple[np.ndarray, np.ndarray], max_lag: int) -> bool:
    """Whether the query moves with the source along ``(slope, offset)`` over ``p``'s span at every
    lag up to ``max_lag`` together (their mean agreement reaches SHORT_MOTION)."""
    line = p.on_line(slope, offset)
    agree = [motion_agreement(embeddings[0], embeddings[1], tq, ts, line, lag=lag)[0] for lag in range(1, max_lag + 1)]
    return bool(np.all(np.isfinite(agree)) and np.mean(agree) >= SHORT_MOTION)


def align_pair(query_id: str, source_id: str,
               q_times: np.ndarray, s_times: np.ndarray, visual_sim: np.ndarray | None,
               q_windows: np.ndarray, s_windows: np.ndarray, audio_sim: np.ndarray | None,
               cfg: SegmentConfig, cell: float = 1.0, q_valid: np.ndarray | None = None,
               s_valid: np.ndarray | None = None,
               embeddings: tuple[np.ndarray, np.ndarray] | None = None,
               background: np.ndarray | None = None,
               codes: tuple[tuple[CodeReading, ...], CodeReading | None] | None = None) -> list[SegmentMatch]:
    """All copied segments between one query and one source, best first. ``background``: per query
    frame, its best similarity to the other candidates (``distinctiveness``), or None. ``codes``:
    the query's Chromaprint readings and the source's codes, which confirm audio pieces
    (match/audio_confirm.py), or None."""
    vis = align(q_times, s_times, visual_sim, cfg.visual_lo, cfg.visual_hi, cfg, cell, q_valid=q_valid,
                s_valid=s_valid) \
        if visual_sim is not None and visual_sim.size else []
    use_distinct = background is not None and cfg.distinct_full > cfg.distinct_lo and visual_sim is not None

    best = visual_sim.max(axis=1) if use_distinct else None

    def check(p: Piece, best_moving: bool = False, unplaced: bool = False) -> Piece:
        d = sure = 0.0
        if use_distinct:
            raw = distinctiveness(p, best, background, q_times, q_valid)
            d = float(np.clip((raw - cfg.distinct_lo) / (cfg.distinct_full - cfg.distinct_lo), 0.0, 1.0))
            if cfg.distinct_lift > 0:
                sure = float(np.clip((raw - cfg.distinct_full) / (cfg.distinct_sure - cfg.distinct_full), 0.0, 1.0))
        return _checked(p, embeddings, q_times, s_times, cfg, d, best_moving, sure, unplaced)

    vis = [_realigned(p, check(p), check, visual_sim, q_times, s_times, embeddings, cfg, cell, q_valid, s_valid)
           if embeddings is not None and cfg.motion_full > cfg.motion_lo else check(p) for p in vis]
    aud: list[Piece] = []
    if audio_sim is not None and audio_sim.size:
        qc, sc = q_windows.mean(axis=1), s_windows.mean(axis=1)
        aud = align(qc, sc, audio_sim, cfg.audio_lo, cfg.audio_hi, cfg, cell=0.0, pad=cfg.audio_pad,
                    edge=cfg.audio_edge)
        if codes is not None:
            aud = [confirmed(a, codes[0], codes[1], cfg.audio_confirm_none, cfg.audio_confirm_full, cfg.min_score)
                   for a in aud]
    window = float(np.median(q_windows[:, 1] - q_windows[:, 0])) if len(q_windows) else 0.0
    window = window if np.isfinite(window) and window > 0 else 0.0
    merged = merge_close(merge_modalities(vis, aud, cfg.offset_tol, cfg.min_score, window), cfg.max_gap)
    if use_distinct:
        merged = siblings_lifted(merged, cfg, lambda p: distinctiveness(p, best, background, q_times, q_valid))
    matched = cfg.visual_lo + cfg.cell_threshold * (cfg.visual_hi - cfg.visual_lo)  # a cell ``align`` counts
    merged = [(refine_offset(p, q_times, s_times, visual_sim, cell, q_valid, cfg.slopes, cfg.offset_tol, matched,
                             heard=heard_line(p, aud, cfg.offset_tol)) if "visual" in mods else p, mods)
              for p, mods in merged] if visual_sim is not None and visual_sim.size else merged
    if visual_sim is not None and visual_sim.size:
        # a copy the sound alone found, whose picture matches along the sound's line, is bounded by
        # the picture (its own line went to a look-alike stretch)
        seen = [seen_along(p, q_times, s_times, visual_sim, matched, cfg.offset_tol / 2, cfg.min_len, window, cell,
                           q_valid) if mods == ("audio",) and p.score >= cfg.min_score else None for p, mods in merged]
        merged = [(v, ("visual", "audio")) if v is not None else (p, mods) for (p, mods), v in zip(merged, seen)]
    if codes is not None:
        # a copy the sound alone found ends where its codes stop agreeing, up to a window further
        # than its windows matched (noise or a tempo change leaves a copy's first windows under the
        # cell threshold) or inside them, along the slope its codes agree on; one the picture
        # bounded keeps its query span, and lies on that slope too where it kept its sound
        q_codes, s_codes, none = codes[0], codes[1], cfg.audio_confirm_none
        merged = [(p if p.score < cfg.min_score
                   else bounded_by_codes(p, q_codes, s_codes, none, max(cfg.audio_pad, window), cfg.slopes)
                   if mods == ("audio",)
                   else resloped(p, q_codes, s_codes, none, cfg.audio_confirm_full, cfg.slopes), mods)
                  for p, mods in merged]
    if len(q_windows) and len(s_windows):
        # the sound places a copy a third of a second late (modalities.HEARD_LAG_S)
        q_ext = (float(q_windows[:, 0].min()), float(q_windows[:, 1].max()))
        s_ext = (float(s_windows[:, 0].min()), float(s_windows[:, 1].max()))
        merged = [(heard_earlier(p, q_ext, s_ext) if mods == ("audio",) else p, mods) for p, mods in merged]
    out = [SegmentMatch(query_id, round(float(p.q_start), 2), round(float(p.q_end), 2), source_id,
                        round(float(p.s_start), 2), round(float(p.s_end), 2), round(float(p.score), 4), mods)
           for p, mods in merged if p.score >= cfg.min_score]
    return sorted(out, key=lambda m: -m.score)


def suppress_overlaps(segments: list[SegmentMatch], max_overlap: float = 0.5) -> list[SegmentMatch]:
    """Across all sources of one query: a query second was copied from one place, so where
    segments of different sources overlap, the strongest explains it and the others go. This is what keeps look-alike content (the same static scene, a shared intro) from
    being reported as a copy of every video that contains it."""
    kept: list[SegmentMatch] = []
    # ties (look-alike footage scores as high as the true source) go to the segment that more
    # modalities confirm, then to the longer one
    for m in sorted(segments, key=lambda m: (-round(m.score, 2), -len(m.modalities), -(m.q_end - m.q_start),
                                             m.source_id)):
        length = max(m.q_end - m.q_start, 1e-6)
        if all(overlap(m.q_start, m.q_end, k.q_start, k.q_end) <= max_overlap * length for k in kept):
            kept.append(m)
    return kept
