"""A visual piece's source offset and slope, checked along its whole line.

``align`` fits a piece's line to each query frame's best source frame. On slow footage (a pan,
a talking head, a still with a little noise) the neighbouring source seconds score within a few
hundredths of the true one, so the best frame of each row wanders by a second and the fit can sit
a whole second or more off; a piece the picture cannot pin takes the audio's offset, which is
only as fine as the indexed window spacing. Either way the query span is right and the source
span is shifted, which a copy-localisation score counts twice (the source interval's IoU drops
from 1 to 0.71 for a 6 s copy shifted by 1 s).

The line's mean similarity over all its rows is a steadier judge than each row's maximum: a
reported piece that the picture took part in is moved by the whole-frame shift (up to
``MAX_SHIFT`` frames) that raises that mean most, when it gains at least ``MIN_GAIN``. Only the
source span moves: the piece's score, and so what is reported at all, stays as it was (moving the
lines inside ``align``, before the motion and distinctiveness checks, gained more on the hard
variant but let a dev40 distractor through). Measured with ``benchmarks/segments_bench.py``:
hard variant, four seeds pooled, LCT-2024 0.688 -> 0.705, segment micro-AP 0.717 -> 0.726; dev40
0.987 -> 0.990 (docs/performance.md). The same judge checks the slope: the line fitted to each
row's most similar frame replaces the piece's when it is more similar along its length (a sped copy
of a slow scene voted at slope 1; ``_refit``): seeds 5-8 0.765 -> 0.778 together with the merging
rules of match/modalities.py. Where frames a second apart leave the line means of nearby slopes
tied, the rows' peaks placed between frames tell them apart (``_on_peaks``).

Also here, the other per-line sums of match/align.py: the offsets a moving line may take
(``dense_offsets``) and a line's path score (``path_score``).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from astradup.match.motion import nearest

MAX_SHIFT = 3  # frames either way: the audio offset's grain (2 s) plus the fit's wander
MIN_GAIN = 0.01  # mean similarity along the line; below it the fitted offset stands


def line_mean(tq: np.ndarray, ts: np.ndarray, sim: np.ndarray, rows: np.ndarray, slope: float,
              offset: float, cell: float) -> float:
    """Mean of ``sim`` along ``t_s = slope * t_q + offset`` over query ``rows``, each taking the
    source frame within half a cell of the line; -1 when under half the rows find one."""
    target = slope * tq[rows] + offset
    j = nearest(ts, target)
    ok = np.abs(ts[j] - target) <= cell / 2 + 1e-6
    if ok.sum() < max(2, len(rows) // 2):
        return -1.0
    return float(sim[rows[ok], j[ok]].mean())


def refine_offset(p, tq: np.ndarray, ts: np.ndarray, sim: np.ndarray, cell: float,
                  q_valid: np.ndarray | None = None, slopes: tuple = (), tol: float = 1.5,
                  floor: float = -np.inf, heard: tuple[float, float] | None = None):
    """``p`` (a piece: q_start, q_end, s_start, s_end, slope, offset) moved along the source by
    the whole-frame shift that raises its line's mean similarity by ``MIN_GAIN`` or more, or put
    on the line of its rows' most similar source frames (``_refit``: ``slopes`` searched, ``tol``
    the line's width, ``floor`` the least similarity of a matched frame) when that line, at its own
    best shift, is more similar still and ends a frame or more away; then put on the slope its
    rows' peaks run along where they tell it from the piece's (``_on_peaks``). ``heard``: (slope,
    offset) of the sound's line where the audio found the same copy; no move may take the piece's
    middle more than half a cell from it (``_within_heard``)."""
    if cell <= 0 or len(ts) < 2:
        return p
    rows = np.flatnonzero((tq >= p.q_start) & (tq <= p.q_end))  # the piece's informative rows
    if q_valid is not None:
        rows = rows[np.asarray(q_valid, bool)[rows]]
    if len(rows) < 2:
        return p
    q = _shifted_or_refit(p, rows, tq, ts, sim, cell, slopes, tol, floor, heard)
    return _on_peaks(q, rows, tq, ts, sim, cell, slopes, tol, floor, heard) if slopes else q


def _shifted_or_refit(p, rows: np.ndarray, tq: np.ndarray, ts: np.ndarray, sim: np.ndarray, cell: float,
                      slopes: tuple, tol: float, floor: float, heard: tuple[float, float] | None):
    """``refine_offset``'s whole-frame shift or ``_refit`` line."""
    shifts = cell * np.arange(-MAX_SHIFT, MAX_SHIFT + 1)
    mid = (p.q_start + p.q_end) / 2

    def shifted_means(slope: float, offset: float, stay: bool) -> list[float]:
        """The line's mean at each shift, -inf where the shift leaves the sound's line (``stay``:
        the unshifted line is always measured, as what a move must beat)."""
        return [line_mean(tq, ts, sim, rows, slope, offset + d, cell)
                if (stay and d == 0) or _within_heard(slope, offset + d, mid, heard, cell) else -np.inf
                for d in shifts]

    means = shifted_means(p.slope, p.offset, stay=True)
    k = int(np.argmax(means))
    if slopes and len(rows) >= REFIT_MIN_ROWS:
        # one frame wider than the line's tolerance: the voted line itself may sit a frame off
        a, b = _refit(tq, ts, sim, rows, p.slope, p.offset, tol + cell, slopes, floor)
        if abs(a - p.slope) * (p.q_end - p.q_start) >= cell:
            alt = shifted_means(a, b, stay=False)
            j = int(np.argmax(alt))
            if alt[j] > max(means[k], means[MAX_SHIFT] + MIN_GAIN):
                b += float(shifts[j])
                return p.on_line(a, b)
    if means[k] < means[MAX_SHIFT] + MIN_GAIN:
        return p
    d = float(shifts[k])
    return dataclasses.replace(p, s_start=max(p.s_start + d, 0.0), s_end=p.s_end + d, offset=p.offset + d)


# A row's peak bends at least this much (similarity, over a frame either side) before its sub-frame
# position counts: a still or slow row's flat top would put it anywhere within a frame.
PEAK_BEND = 0.01
PEAK_MIN_ROWS = 6  # rows with a bent peak a slope fit needs, over PEAK_MIN_SPAN seconds or more
PEAK_MIN_SPAN = 5.0
PEAK_Z = 2.0  # standard errors by which the fitted slope must differ from the piece's


def _on_peaks(p, rows: np.ndarray, tq: np.ndarray, ts: np.ndarray, sim: np.ndarray, cell: float,
              slopes: tuple, tol: float, floor: float, heard: tuple[float, float] | None):
    """``p`` on a searched slope along its rows' sub-frame peaks, or ``p``.

    Frames a second apart put a 10% speed-up's line means at slopes 1.05-1.15 within 0.01 of each
    other and of slope 1 (each row reads its nearest frame), so six sped copies without sound were
    reported at slope 1, a second short in the source (hard seeds 5-9 and 11). Where a row's
    similarities bend over its best frame (``PEAK_BEND``), a parabola through it and its neighbours
    places the peak between frames; the line fitted through those peaks tells the slope to a few
    hundredths. It replaces the piece's when it differs by ``PEAK_Z`` standard errors, taking the
    searched slope within one standard error (or the nearest) whose line is most similar, if that is
    at least as similar as the piece's own. Seeds 9 and 11 LCT-2024 0.836 -> 0.840, seeds 5-8 IoU
    0.828 -> 0.830, dev40 unchanged: six copies bounded better (0.87-0.91 -> 0.96-1.00), one worse
    (0.91 -> 0.88, put on 1.25 for 1.1). ``rows``: the piece's informative query rows; a shift
    or refit before it leaves its query span as it was."""
    bands = _bands(ts, p.slope * tq[rows] + p.offset, tol + cell) if len(ts) >= 3 else None
    if len(rows) < PEAK_MIN_ROWS or bands is None:
        return p
    cols, _, inside, step = bands
    width, n = cols.shape[1], np.arange(len(rows))
    k = np.where(inside, sim[rows[:, None], cols], -np.inf).argmax(axis=1)
    j = cols[n, k]
    peaked = inside[n, k] & (k > 0) & (k < width - 1) & inside[n, np.minimum(k + 1, width - 1)] & (j > 0) & \
        (j < len(ts) - 1)
    before, top, after = sim[rows, np.maximum(j - 1, 0)], sim[rows, j], sim[rows, np.minimum(j + 1, len(ts) - 1)]
    bend = before + after - 2 * top
    peaked &= (-bend >= PEAK_BEND) & (top >= floor)
    if peaked.sum() < PEAK_MIN_ROWS:
        return p
    xs = tq[rows][peaked]
    ys = ts[j][peaked] + np.clip(0.5 * (before - after)[peaked] / bend[peaked], -0.5, 0.5) * step
    if float(xs.max() - xs.min()) < PEAK_MIN_SPAN:
        return p
    (a, _), cov = np.polyfit(xs, ys, 1, cov=True)
    se = float(np.sqrt(cov[0, 0]))
    if not (np.isfinite(a) and np.isfinite(se) and min(slopes) - 0.02 <= a <= max(slopes) + 0.02) or \
            abs(a - p.slope) < PEAK_Z * se:
        return p
    nearest = min(slopes, key=lambda s: abs(s - a))
    reach = max(se, abs(nearest - a)) + 1e-9
    mid, length = (p.q_start + p.q_end) / 2, p.q_end - p.q_start
    best = None
    for s in slopes:
        # a slope that moves an end by under half a frame is the piece's own
        if abs(s - a) > reach or abs(s - p.slope) * length < cell / 2 or abs(s - p.slope) < 0.025:
            continue
        off = float(np.mean(ys - s * xs))
        if not _within_heard(s, off, mid, heard, cell):
            continue
        key = (round(line_mean(tq, ts, sim, rows, s, off, cell), 6), -abs(s - p.slope))
        if best is None or key > best[0]:
            best = (key, s, off)
    if best is None or best[0][0] < line_mean(tq, ts, sim, rows, p.slope, p.offset, cell):
        return p
    return p.on_line(float(best[1]), best[2])


def _within_heard(slope: float, offset: float, mid: float, heard: tuple[float, float] | None, cell: float) -> bool:
    """Whether a line passes within half a cell of the sound's line (``heard``) at query time ``mid``.

    A source that shows one photo in several shots (zooms and pans over the same picture) offers
    lines seconds apart that are all about as similar, and after a crop the wrong zoom can be a
    little more similar than the copied one; the sound, where it came with the copy, has no such
    echo (hard benchmark seed 5: a copy placed right by both, at s 2-9, was moved 3 s by the picture
    alone). Its line, fitted over many windows, is the sharper judge here: half a cell is the slack."""
    if heard is None:
        return True
    return abs((slope - heard[0]) * mid + offset - heard[1]) <= cell / 2 + 1e-6


REFIT_MIN_ROWS = 5  # frames a piece needs before its slope is fitted again
REFIT_MAX_WIDTH = 64  # source frames a row's band may hold (times packed tighter than frames)


def _refit(tq: np.ndarray, ts: np.ndarray, sim: np.ndarray, rows: np.ndarray, slope: float, offset: float,
           tol: float, slopes: tuple, floor: float) -> tuple[float, float]:
    """(slope, offset) fitted to each row's most similar source frame within ``tol`` of the line
    (ties to the nearer) where that frame is a match at all (``floor``: a row whose copied frame is
    blank in the source has only a chance neighbour there), or the line itself when under
    ``REFIT_MIN_ROWS`` rows have one or the fit leaves the slopes searched.

    ``align`` picks each row's frame by evidence, which is clipped at ``visual_hi``: on a sped copy
    whose frames all match past it, every frame near the voted line counts the same, the nearest
    wins, and the fit returns the voted slope. A 10% speed-up voted at slope 1 (the slope prior
    favours 1 when the path scores are close) then reports 10 s of source for 11 (hard benchmark:
    IoU 0.91 where the raw similarities run along slope 1.1)."""
    bands = _bands(ts, slope * tq[rows] + offset, tol)
    if bands is None:  # a damaged record's times
        return slope, offset
    cols, dist, inside, _ = bands
    band = np.where(inside, sim[rows[:, None], cols] - 0.01 * dist, -np.inf)
    k = band.argmax(axis=1)
    best = band[np.arange(len(rows)), k]
    ok = np.isfinite(best) & (best >= floor)
    if ok.sum() < REFIT_MIN_ROWS:
        return slope, offset
    a, b = np.polyfit(tq[rows][ok], ts[cols[np.arange(len(rows)), k][ok]], 1)
    if not min(slopes) - 0.02 <= a <= max(slopes) + 0.02:
        return slope, offset
    return float(a), float(b)


def _bands(ts: np.ndarray, target: np.ndarray, tol: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """Per row, the source frames within ``tol`` of its ``target`` time: (their columns, clamped
    into range; their distance from it; which of them lie within ``tol``; the frame step), or None
    where the times give no step (a damaged record's). Only the frames a band can hold, gathered
    per row (``_refit``, ``_on_peaks``): a whole [rows, frames] table of a long pair cost 13 ms a
    piece."""
    step = float(np.median(np.diff(ts))) if len(ts) >= 2 else np.nan
    if not (np.isfinite(step) and step > 0 and np.isfinite(tol)):
        return None
    width = min(int(np.ceil(2 * tol / step)) + 2, REFIT_MAX_WIDTH)
    cols = np.searchsorted(ts, target - tol)[:, None] + np.arange(width)[None, :]
    inside = cols < len(ts)
    cols = np.minimum(cols, len(ts) - 1)
    dist = np.abs(ts[cols] - target[:, None])
    return cols, dist, inside & (dist <= tol), step


def _unique(a: np.ndarray) -> np.ndarray:
    """``np.unique(a)`` by one sort: numpy 2's hashing unique took 0.7 s of a long video's scoring."""
    a = np.sort(a.ravel())
    return a[np.concatenate([[True], a[1:] != a[:-1]])] if len(a) else a


SLOTS_MAX = 1 << 22  # entries a look-up table of ``dense_offsets`` holds at most (32 MB)


def _distinct(k: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(the distinct integers of ``k`` sorted, and per integer of [min - 1, max + 1] its index among
    them or -1). Marked in a table over that range, not sorted; when the range is too wide or not
    finite (a NaN time in a damaged record), by ``_unique`` and None (``dense_offsets`` then searches,
    as it always did)."""
    width = float(k.max() - k.min()) if len(k) else math.inf
    if not width + 3 <= SLOTS_MAX:  # also false for NaN
        return _unique(k), None
    span = int(width) + 3
    mark = np.zeros(span, bool)
    mark[(k - k.min() + 1).astype(np.int64)] = True
    at = np.flatnonzero(mark)
    slot = np.full(span, -1, np.int64)
    slot[at] = np.arange(len(at))
    return at - 1 + k.min(), slot


def _rows_covered(pos: np.ndarray, rows: np.ndarray, n_pos: int, n_rows: int) -> np.ndarray:
    """Per position, how many distinct ``rows`` some (position, row) pair holds."""
    if n_pos * n_rows <= SLOTS_MAX:
        mark = np.zeros(n_pos * n_rows, bool)
        mark[pos.astype(np.int64) * n_rows + rows.astype(np.int64)] = True
        return mark.reshape(n_pos, n_rows).sum(axis=1)
    key = _unique(pos.astype(np.int64) * n_rows + rows.astype(np.int64))
    return np.bincount(key // n_rows, minlength=n_pos)


def dense_offsets(resid: np.ndarray, step: float, row_of: np.ndarray, n_rows: int, min_density: float
                  ) -> np.ndarray:
    """The line offsets (multiples of ``step`` where the matched cells put them) that pass near a
    matched cell (within ``step`` of its residual ``resid``) in at least ``min_density`` of the
    span's ``n_rows`` query rows (``row_of``: each cell's row).

    A cell's residual lies within ``step`` of at most the offsets one below, at and one above its
    own rounded one, so the cells x offsets table is never built: a long span of a near-static
    source has a block of 10^5 matched cells and 10^3 offsets, and that table cost seconds."""
    k = np.round(resid / step)
    uniq, slot = _distinct(k)
    offsets = uniq * step
    pos, cov_rows = [], []
    for d in (-1.0, 0.0, 1.0):
        u = k + d
        if slot is not None:  # uniq's index of each integer, -1 where none: a look-up, not a binary search
            at = slot[(u - uniq[0] + 1).astype(np.int64)]
            ok = at >= 0
        else:
            at = np.searchsorted(uniq, u)
            ok = (at < len(uniq)) & (uniq[np.minimum(at, len(uniq) - 1)] == u)
        near = ok & (np.abs(resid - u * step) <= step)
        pos.append(at[near])
        cov_rows.append(row_of[near])
    covered = _rows_covered(np.concatenate(pos), np.concatenate(cov_rows), len(offsets), n_rows)
    return offsets[covered >= min_density * n_rows]


def path_score(t: np.ndarray, r: np.ndarray) -> tuple[float, int]:
    """(sum over the distinct times ``t`` of the best ``r`` at each (at least -1), how many times). The
    sum runs in the order the times first appear, so it is the float a per-cell dict loop gave: that
    loop was a fifth of a long near-duplicate pair's scoring."""
    if not len(t):
        return 0, 0
    order = np.argsort(t, kind="stable")
    ts = t[order]
    starts = np.flatnonzero(np.concatenate([[True], ts[1:] != ts[:-1]]))
    best = np.maximum(np.maximum.reduceat(np.asarray(r, np.float64)[order], starts), -1.0)
    return sum(best[np.argsort(order[starts])].tolist()), len(starts)
