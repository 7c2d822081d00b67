"""A reported piece's source offset checked along its whole line (match/line_offset.py)."""
from __future__ import annotations

import numpy as np

from astradup.config import load_config
from astradup.match.align import Piece, align_pair
from astradup.match.line_offset import MAX_SHIFT, MIN_GAIN, REFIT_MIN_ROWS, _on_peaks, _refit, line_mean, refine_offset


def _slow_footage(n_q: int = 40, n_s: int = 40, q0: int = 10, s0: int = 5, length: int = 10,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Query seconds q0..q0+length copy source seconds s0..; the source changes slowly, so a
    copied row is almost as similar to the neighbouring source seconds (0.03 less per second) and
    noise of +-0.02 moves each row's best frame by a second here and there."""
    rng = np.random.default_rng(seed)
    tq, ts = np.arange(n_q) + 0.5, np.arange(n_s) + 0.5
    sim = rng.uniform(-0.05, 0.1, size=(n_q, n_s))
    for i in range(q0, q0 + length):
        j0 = s0 + (i - q0)
        for j in range(n_s):
            sim[i, j] = max(sim[i, j], 0.88 - 0.03 * abs(j - j0) + rng.uniform(-0.02, 0.02))
    return tq, ts, sim


def _piece(q0: float, q1: float, offset: float) -> Piece:
    return Piece(q0, q1, q0 + offset, q1 + offset, 0.9, 1.0, offset)


def test_a_piece_fitted_a_second_off_is_moved_onto_the_copy():
    tq, ts, sim = _slow_footage()
    true = -5.0  # source second = query second - 5
    for wrong in (true - 2, true - 1, true + 1, true + 3):
        p = refine_offset(_piece(10, 20, wrong), tq, ts, sim, 1.0)
        assert p.offset == true and (p.s_start, p.s_end) == (5.0, 15.0), wrong
    right = _piece(10, 20, true)
    assert refine_offset(right, tq, ts, sim, 1.0) is right


def test_the_sounds_line_keeps_a_copy_off_a_more_similar_shot_of_the_same_photo():
    """A source showing one photo in two shots: after a crop, the query matches the later shot
    (3 s on) a little better than the copied one. The picture alone moves the piece there; the
    sound, which came with the copy, says where it is."""
    tq, ts, sim = _slow_footage()
    true = -5.0
    for i in range(10, 20):
        sim[i, i - 5 + 3] = 0.95  # the echo: the same picture 3 s later, more alike after the crop
    right = _piece(10, 20, true)
    assert refine_offset(right, tq, ts, sim, 1.0).offset == true + 3  # the picture alone
    assert refine_offset(right, tq, ts, sim, 1.0, heard=(1.0, true + 0.3)) is right
    # a sound line a whole cell away does not pin the piece to the wrong place either: no shift
    # within half a cell of it exists, so the piece stays where the picture's fit put it
    assert refine_offset(right, tq, ts, sim, 1.0, heard=(1.0, true - 1.0)) is right
    # within the sound's slack the picture still moves a piece fitted a second off
    off = _piece(10, 20, true - 1)
    assert refine_offset(off, tq, ts, sim, 1.0, heard=(1.0, true + 0.2)).offset == true


def test_only_whole_frame_shifts_within_reach_that_gain_enough_move_a_piece():
    tq, ts, sim = _slow_footage()
    far = _piece(10, 20, -5.0 + MAX_SHIFT + 2)  # the copy lies beyond the shifts tried
    moved = refine_offset(far, tq, ts, sim, 1.0)
    assert moved.offset >= far.offset - MAX_SHIFT
    # a flat block (a still): every shift scores alike, nothing gains MIN_GAIN, the fit stands
    flat = np.full((40, 40), 0.8)
    p = _piece(10, 20, -4.0)
    assert refine_offset(p, tq, ts, flat, 1.0) is p
    rows = np.arange(10, 20)
    assert abs(line_mean(tq, ts, flat, rows, 1.0, -3.0, 1.0) - line_mean(tq, ts, flat, rows, 1.0, -4.0, 1.0)) < MIN_GAIN
    # audio pieces (no frame cell) and pieces off the end of the source are left alone
    assert refine_offset(p, tq, ts, sim, 0.0) is p
    assert line_mean(tq, ts, sim, rows, 1.0, 100.0, 1.0) == -1.0


def test_align_pair_reports_the_copy_at_its_source_seconds_on_slow_footage():
    cfg = load_config(None, {}).segments
    hits = 0
    for seed in range(8):
        tq, ts, sim = _slow_footage(seed=seed)
        segs = align_pair("q", "s", tq, ts, sim, np.zeros((0, 2)), np.zeros((0, 2)), None, cfg, cell=1.0)
        assert segs and abs(segs[0].q_start - 10) <= 1 and abs(segs[0].q_end - 20) <= 1
        hits += abs(segs[0].s_start - 5) <= 0.5 and abs(segs[0].s_end - 15) <= 0.5
    assert hits == 8


def _sped_copy(slope: float = 1.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Query seconds 10-20 copy source 5-16 sped up 10%; the source is one slow scene, so every
    copied row matches the source seconds within 1.5 s past ``visual_hi`` (0.82-0.90) and only the raw
    similarities, highest along the true line, tell its slope."""
    rng = np.random.default_rng(seed)
    tq, ts = np.arange(40) + 0.5, np.arange(40) + 0.5
    sim = rng.uniform(-0.05, 0.1, size=(40, 40))
    for i in range(10, 20):
        true = 5 + slope * (tq[i] - 10)
        sim[i] = np.maximum(sim[i], 0.90 - 0.05 * np.abs(ts - true) + rng.uniform(-0.003, 0.003, 40))
    return tq, ts, sim


def test_a_sped_copy_voted_at_slope_one_is_put_on_its_own_slope():
    cfg = load_config(None, {}).segments
    tq, ts, sim = _sped_copy()
    voted = _piece(10, 20, -5.0)  # slope 1: reports source 5-15 for 5-16
    assert refine_offset(voted, tq, ts, sim, 1.0) is voted  # without the slopes, only shifts: none gains
    p = refine_offset(voted, tq, ts, sim, 1.0, slopes=cfg.slopes, tol=cfg.offset_tol)
    assert abs(p.slope - 1.1) < 0.05 and abs(p.s_start - 5.0) <= 0.5 and abs(p.s_end - 16.0) <= 0.5
    # an unsped copy of the same kind keeps its line
    tq, ts, sim = _sped_copy(slope=1.0)
    p = refine_offset(voted, tq, ts, sim, 1.0, slopes=cfg.slopes, tol=cfg.offset_tol)
    assert (p.slope, p.s_start, p.s_end) == (1.0, 5.0, 15.0)


def test_align_pair_reports_a_sped_copy_of_a_slow_scene_with_its_source_length():
    cfg = load_config(None, {}).segments
    for seed in range(4):
        tq, ts, sim = _sped_copy(seed=seed)
        (m,) = align_pair("q", "s", tq, ts, sim, np.zeros((0, 2)), np.zeros((0, 2)), None, cfg, cell=1.0)
        assert (m.q_start, m.q_end) == (10.0, 20.0)
        assert abs(m.s_start - 5.0) <= 0.5 and abs(m.s_end - 16.0) <= 0.5, (seed, m)


def test_rows_whose_copied_frame_is_blank_in_the_source_do_not_tilt_the_refit():
    """An unsped copy whose last two source seconds are blank (zeroed: no evidence) leaves those
    rows only a chance neighbour two seconds on (0.43, where the rest of the row is 0.28); counted,
    they tilt the refitted line to ~1.2 (hard benchmark seed 8: an overlay copy reported 11 s of
    source for 10)."""
    cfg = load_config(None, {}).segments
    matched = cfg.visual_lo + cfg.cell_threshold * (cfg.visual_hi - cfg.visual_lo)
    tq, ts, sim = _sped_copy(slope=1.0)
    for r in (18, 19):
        sim[r] = 0.28
        sim[r, r - 5] = 0.0
        sim[r, r - 3] = 0.43
    voted = _piece(10, 20, -5.0)
    tilted = refine_offset(voted, tq, ts, sim, 1.0, slopes=cfg.slopes, tol=cfg.offset_tol)
    assert tilted.slope > 1.1  # without the floor the chance neighbours pull the line
    kept = refine_offset(voted, tq, ts, sim, 1.0, slopes=cfg.slopes, tol=cfg.offset_tol, floor=matched)
    assert kept.slope == 1.0


def _refit_by_whole_table(tq, ts, sim, rows, slope, offset, tol, slopes, floor):
    """``_refit`` by its definition: every source frame of every row weighed, no window."""
    dist = np.abs(ts[None, :] - (slope * tq[rows][:, None] + offset))
    band = np.where(dist <= tol, sim[rows] - 0.01 * dist, -np.inf)
    j = band.argmax(axis=1)
    best = band[np.arange(len(rows)), j]
    ok = np.isfinite(best) & (best >= floor)
    if ok.sum() < REFIT_MIN_ROWS:
        return slope, offset
    a, b = np.polyfit(tq[rows][ok], ts[j[ok]], 1)
    return (float(a), float(b)) if min(slopes) - 0.02 <= a <= max(slopes) + 0.02 else (slope, offset)


def test_the_refit_reads_only_each_rows_band_and_gives_what_the_whole_table_gives():
    rng = np.random.default_rng(1)
    slopes = (0.8, 1.0, 1.25)
    for trial in range(400):
        nq, ns = int(rng.integers(5, 60)), int(rng.integers(2, 60))
        tq, ts = np.arange(nq) + 0.5, np.arange(ns) * rng.choice([1.0, 0.5, 2.0]) + 0.5
        # coarse values make ties, which both must break alike (the nearer frame, then the first)
        sim = rng.choice([0.3, 0.6, 0.8, 0.9], size=(nq, ns)) if trial % 2 else rng.uniform(0, 1, (nq, ns))
        args = (tq, ts, sim, np.arange(nq), rng.choice([0.9, 1.0, 1.1]), rng.uniform(-20, 20),
                rng.choice([1.0, 1.5, 2.5]), slopes, rng.choice([-np.inf, 0.55]))
        assert np.allclose(_refit(*args), _refit_by_whole_table(*args)), trial


def test_damaged_source_times_leave_the_refit_out_instead_of_failing():
    cfg = load_config(None, {}).segments
    tq, ts, sim = _sped_copy()
    voted = _piece(10, 20, -5.0)
    for bad in (np.full(40, 3.0), np.where(np.arange(40) == 7, np.nan, ts)):
        p = refine_offset(voted, tq, bad, sim, 1.0, slopes=cfg.slopes, tol=cfg.offset_tol)
        assert p.q_start == 10 and p.q_end == 20
    assert _refit(tq, np.full(40, 3.0), sim, np.arange(10, 20), 1.0, -5.0, 1.5, cfg.slopes, 0.55) == (1.0, -5.0)


ROWS = np.arange(10, 20)  # the query rows of a piece over 10-20 s: times 10.5 ... 19.5


def _peaked_copy(speed: float, seed: int = 0, width: float = 1.6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Query seconds 10-20 copy source seconds 5 on at ``speed``: each copied row peaks, smoothly
    (``width`` s), where its content lies in the source, most often between two 1 s frames."""
    rng = np.random.default_rng(seed)
    tq, ts = np.arange(40) + 0.5, np.arange(40) + 0.5
    sim = rng.uniform(-0.05, 0.1, size=(40, 40))
    for i in range(10, 20):
        at = 5.0 + speed * (tq[i] - 10.0)
        sim[i] = np.maximum(sim[i], 0.9 * np.exp(-0.5 * ((ts - at) / width) ** 2) + rng.uniform(-0.005, 0.005, 40))
    return tq, ts, sim


def test_a_sped_copy_at_slope_one_is_put_on_the_slope_its_rows_peaks_run_along():
    """Read at the nearest frame, slopes 1 and 1.1 hardly differ over 10 s; the rows' peaks, placed
    between frames by a parabola through each best frame and its neighbours, run along 1.1."""
    slopes = load_config(None, {}).segments.slopes
    for seed in range(4):
        tq, ts, sim = _peaked_copy(1.1, seed)
        p = _on_peaks(Piece(10.0, 20.0, 5.5, 15.5, 0.9, 1.0, -4.5), ROWS, tq, ts, sim, 1.0, slopes, 1.5, 0.55, None)
        assert p.slope == 1.1 and abs(p.s_start - 5.0) <= 0.1 and abs(p.s_end - 16.0) <= 0.1, (seed, p)
        # not where the sound, which found the same copy, runs elsewhere
        voted = Piece(10.0, 20.0, 5.5, 15.5, 0.9, 1.0, -4.5)
        assert _on_peaks(voted, ROWS, tq, ts, sim, 1.0, slopes, 1.5, 0.55, (1.0, -3.0)) is voted


def test_an_unsped_copy_and_a_still_shot_keep_their_slope():
    slopes = load_config(None, {}).segments.slopes
    tq, ts, sim = _peaked_copy(1.0)
    p = Piece(10.0, 20.0, 5.0, 15.0, 0.9, 1.0, -5.0)
    assert _on_peaks(p, ROWS, tq, ts, sim, 1.0, slopes, 1.5, 0.55, None) is p
    still = sim.copy()
    still[10:20] = np.maximum(still[10:20], 0.8)  # every frame alike: the rows' tops are flat
    assert _on_peaks(p, ROWS, tq, ts, still, 1.0, slopes, 1.5, 0.55, None) is p
    assert _on_peaks(p, ROWS, tq, ts[:2], sim[:, :2], 1.0, slopes, 1.5, 0.55, None) is p  # too few frames
