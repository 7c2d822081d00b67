"""One pair's visual and audio pieces made into one list (match/modalities.py)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from astradup.config import SegmentConfig
from astradup.match.align import Piece, align_pair
from astradup.match import align as align_module
from astradup.match.modalities import HEARD_LAG_S, both_found, heard_earlier, merge_modalities, same_line, seen_along

CFG = SegmentConfig()


def _piece(q0: float, q1: float, offset: float, score: float, slope: float = 1.0) -> Piece:
    return Piece(q0, q1, slope * q0 + offset, slope * q1 + offset, score, slope, offset)


def test_a_weak_picture_and_a_weak_sound_on_one_line_are_a_copy_together():
    v, a = _piece(70, 80, -57.0, 0.47), _piece(70.5, 76.5, -56.7, 0.43)
    ((m, mods),) = merge_modalities([v], [a], CFG.offset_tol, CFG.min_score)
    assert mods == ("visual", "audio")
    assert m.score == pytest.approx(1 - 0.53 * 0.57) and m.score >= CFG.min_score
    assert (m.q_start, m.q_end, m.s_start) == (70, 80, 13.0)  # the picture's (sharper) boundaries
    # the same two pieces merged as before (no tolerance given): the better of the two, not a copy
    ((old, _),) = merge_modalities([v], [a])
    assert old.score == 0.47 < CFG.min_score


def test_overlapping_pieces_on_different_lines_do_not_add_up():
    """A 5 s audio window overlaps much: sound matched 3 s away from where the picture put the copy
    is another place of the source (a repeated chorus), not the same copy seen twice."""
    v, a = _piece(70, 80, -57.0, 0.47), _piece(70.5, 78.5, -54.0, 0.43)
    assert not same_line(v, a, CFG.offset_tol)
    ((m, mods),) = merge_modalities([v], [a], CFG.offset_tol, CFG.min_score)
    assert mods == ("visual", "audio") and m.score == 0.47


def test_both_found_is_never_less_than_either_and_ignores_negative_scores():
    for v, a in [(0.0, 0.0), (0.3, 0.9), (0.9, 0.3), (1.0, 0.2), (-0.5, 0.6)]:
        s = both_found(v, a)
        assert max(v, a, 0.0) <= s <= 1.0


def test_a_picture_line_that_failed_its_checks_is_placed_by_the_sound_that_passed():
    # the picture matched look-alike seconds 4 s off and failed (0.2); the sound passed (0.8)
    v, a = _piece(40, 50, -36.0, 0.2), _piece(40.5, 49.0, -40.0, 0.8)
    ((m, _),) = merge_modalities([v], [a], CFG.offset_tol, CFG.min_score)
    assert (m.q_start, m.q_end) == (40, 50)
    assert (m.s_start, m.s_end, m.offset) == (0.0, 10.0, -40.0) and m.score == 0.8
    # a picture that passed on its own keeps its line
    ok = _piece(40, 50, -36.0, 0.7)
    ((kept, _),) = merge_modalities([ok], [a], CFG.offset_tol, CFG.min_score)
    assert (kept.s_start, kept.offset) == (4.0, -36.0)


def test_a_failed_picture_line_near_the_sounds_is_placed_by_the_sound_though_the_sound_lifts_it():
    # a 10% speed-up whose picture line was voted at slope 0.84 and failed motion (0), its middle
    # within the tolerance of the sound's line (slope 1.045): the two lift each other, and the
    # reported copy runs along the line that passed its checks, the sound's
    v, a = _piece(46, 56, 7.8 - 0.842 * 46, 0.0, slope=0.842), _piece(46.5, 57.5, 7.9 - 1.045 * 46.5, 0.85, slope=1.045)
    assert same_line(v, a, CFG.offset_tol)
    ((m, _),) = merge_modalities([v], [a], CFG.offset_tol, CFG.min_score)
    assert (m.q_start, m.q_end) == (46, 56) and m.slope == 1.045
    assert m.s_end - m.s_start == pytest.approx(10 * 1.045)


def test_align_pair_reports_a_copy_that_sight_and_sound_each_found_weakly():
    """The end-to-end shape of a hard-benchmark copy under speed, overlay and noise: the picture's
    line short of sure on its own (too few seconds of full-strength evidence), the sound's too;
    together they pass ``min_score``, and only on the same line."""
    rng = np.random.default_rng(3)
    tq, ts = np.arange(60) + 0.5, np.arange(40) + 0.5
    vsim = rng.uniform(0.0, 0.2, (60, 40))
    for i in range(20, 24):  # 4 s of picture at 0.85: a short piece, scored by its length
        vsim[i, i - 10] = 0.85
    qw = np.stack([np.arange(0, 56, 0.5), np.arange(0, 56, 0.5) + 5.0], 1)
    sw = np.stack([np.arange(0, 36, 1.0), np.arange(0, 36, 1.0) + 5.0], 1)
    asim = rng.uniform(0.1, 0.4, (len(qw), len(sw)))

    def sound(offset: float) -> np.ndarray:
        s = asim.copy()
        for i, (q0, _) in enumerate(qw):
            j = np.flatnonzero(sw[:, 0] == q0 + offset)
            if 17 <= q0 <= 22 and len(j):
                s[i, j] = 0.75
        return s

    def report(a: np.ndarray) -> list:
        return align_pair("q", "s", tq, ts, vsim, qw, sw, a, CFG, cell=1.0)

    alone_v = [m for m in report(asim)]
    assert not alone_v  # the picture alone is under min_score
    together = report(sound(-10.0))
    assert len(together) == 1 and together[0].modalities == ("visual", "audio")
    assert together[0].q_start <= 20.5 and together[0].q_end >= 23.5
    # the sound alone (picture unrelated) is under min_score too
    assert not align_pair("q", "s", tq, ts, rng.uniform(0.0, 0.2, (60, 40)), qw, sw, sound(-10.0), CFG, cell=1.0)


def test_two_audio_pieces_of_one_soundtrack_lift_a_picture_once():
    """A soundtrack split in two pieces by a gap is one witness: a 0.4 picture with two 0.4 sound
    pieces on its line is 1 - 0.6 x 0.6 (0.64, under min_score), not 1 - 0.6^3."""
    v = _piece(10, 30, 5.0, 0.4)
    a1, a2 = _piece(9, 18, 5.2, 0.4), _piece(21, 31, 4.9, 0.4)
    ((m, mods),) = merge_modalities([v], [a1, a2], CFG.offset_tol, CFG.min_score)
    assert mods == ("visual", "audio")
    assert m.score == pytest.approx(1 - 0.6 * 0.6) and m.score < CFG.min_score


def test_sound_reaching_past_the_picture_by_less_than_a_window_does_not_widen_it():
    """A 3 s copy of a still shot (hard seed 5: query 81-84 s of source 2-5 s): the picture matched
    its 3 s on a line 2 s off, the sound 6.5 s on the true line. Within a window of the picture's
    ends the sound cannot tell a copied second from one its windows only overlap: the copy keeps the
    picture's span, placed on the sound's line. A picture matching a fragment of a much longer heard
    copy (past it by more than a window) still takes the sound's bounds."""
    v = dataclasses.replace(_piece(81, 84, -81.0, 0.375), static=True)
    a = _piece(79.0, 85.5, -78.8, 0.65)
    ((m, mods),) = merge_modalities([v], [a], CFG.offset_tol, CFG.min_score, window=5.0)
    assert mods == ("visual", "audio")
    assert (m.q_start, m.q_end) == (81, 84) and (m.s_start, m.s_end) == pytest.approx((2.2, 5.2))
    ((old, _),) = merge_modalities([v], [a], CFG.offset_tol, CFG.min_score)  # no window given
    assert (old.q_start, old.q_end) == (79.0, 85.5)
    frag, heard = _piece(50, 54, 10.0, 0.5), _piece(45.0, 60.0, 10.0, 0.9)
    ((w, _),) = merge_modalities([frag], [heard], CFG.offset_tol, CFG.min_score, window=5.0)
    assert (w.q_start, w.q_end) == (45.0, 60.0)


def _along(runs: list[tuple[float, float, float]], nq: int = 80, ns: int = 60):
    """Frame times and a similarity matrix whose cells on the line source = query - 16 hold each
    (q0, q1, value) run's value, background 0-0.2 elsewhere."""
    rng = np.random.default_rng(7)
    tq, ts = np.arange(nq) + 0.5, np.arange(ns) + 0.5
    sim = rng.uniform(0.0, 0.2, (nq, ns))
    for q0, q1, value in runs:
        for i, t in enumerate(tq):
            if q0 <= t < q1:
                sim[i, int(np.argmin(np.abs(ts - (t - 16.0))))] = value
    return tq, ts, sim


def _seen(a: Piece, tq, ts, sim):
    return seen_along(a, tq, ts, sim, floor=0.55, tol=0.75, min_len=CFG.min_len, window=5.0)


def test_a_copy_found_by_sound_alone_is_bounded_by_the_picture_along_the_sounds_line():
    """Hard seed 6: the sound found query 47.6-56.1 s (its codes carried it 2.5 s early); along its
    line the frames match over 50-56 s (one frame at 0.5 among them) and nowhere else: the copy is
    50-56 s, source 34-40 s."""
    a = _piece(47.6, 56.1, -16.0, 0.81)
    tq, ts, sim = _along([(50, 56, 0.62), (53, 54, 0.5)])
    m = _seen(a, tq, ts, sim)
    assert (m.q_start, m.q_end) == (50.0, 56.0) and (m.s_start, m.s_end) == pytest.approx((34.0, 40.0))
    assert m.score == a.score and m.offset == a.offset


def test_the_picture_bounds_no_heard_copy_it_does_not_match_or_matches_all_along():
    a = _piece(47.6, 56.1, -16.0, 0.81)
    assert _seen(a, *_along([])) is None  # the picture was replaced
    assert _seen(a, *_along([(20, 75, 0.7)])) is None  # a still scene all along the line
    assert _seen(a, *_along([(52, 54, 0.7)])) is None  # 2 s: under min_len
    # a picture matching a fragment of a much longer heard copy does not cut it down
    assert _seen(_piece(35.0, 60.0, -16.0, 0.9), *_along([(50, 54, 0.7)])) is None


def test_align_pair_bounds_a_heard_copy_by_the_picture_along_its_line():
    """The same through ``align_pair``: audio windows on the line for 49-56 s, the picture on it for
    50-56 s but drawn more strongly to a look-alike stretch 12 s away, whose line fails motion."""
    tq, ts, sim = _along([(50, 56, 0.62)])
    for i, t in enumerate(tq):  # the look-alike: the same query seconds, source 22-28 s
        if 50 <= t < 56:
            sim[i, int(t - 28.0)] = 0.66
    qw = np.array([[t - 2.5, t + 2.5] for t in np.arange(0, 78, 1.0) + 2.5])
    sw = np.array([[t - 2.5, t + 2.5] for t in np.arange(0, 58, 1.0) + 2.5])
    asim = np.full((len(qw), len(sw)), 0.1)
    for i, (q0, q1) in enumerate(qw):
        if 49 <= (q0 + q1) / 2 <= 56:
            asim[i, int(np.argmin(np.abs(sw.mean(axis=1) - ((q0 + q1) / 2 - 16.0))))] = 0.95
    rng = np.random.default_rng(2)
    emb = (rng.normal(size=(len(tq), 8)), rng.normal(size=(len(ts), 8)))
    emb = tuple(e / np.linalg.norm(e, axis=1, keepdims=True) for e in emb)
    out = align_pair("q", "s", tq, ts, sim, qw, sw, asim, CFG, embeddings=emb)
    (m,) = [m for m in out if m.s_start > 30]
    assert (m.q_start, m.q_end) == (50.0, 56.0) and (m.s_start, m.s_end) == pytest.approx((34.0, 40.0))
    assert m.modalities == ("visual", "audio")


def test_a_heard_copy_moves_earlier_except_at_an_end_of_its_videos_sound():
    """The sound places a copy ``HEARD_LAG_S`` late; an end at its video's first or last sound
    stays (a whole-soundtrack copy ends where its video does)."""
    a = Piece(20.0, 30.0, 40.0, 50.0, 0.9, 1.0, 20.0)
    m = heard_earlier(a, (0.0, 60.0), (0.0, 90.0))
    assert (m.q_start, m.q_end) == pytest.approx((20.0 - HEARD_LAG_S, 30.0 - HEARD_LAG_S))
    assert (m.s_start, m.s_end) == pytest.approx((40.0 - HEARD_LAG_S, 50.0 - HEARD_LAG_S))
    assert m.score == a.score and (m.slope, m.offset) == (a.slope, a.offset)
    whole = heard_earlier(Piece(0.0, 60.0, 20.0, 80.0, 0.9, 1.0, 20.0), (0.0, 60.0), (0.0, 90.0))
    assert (whole.q_start, whole.q_end, whole.s_start, whole.s_end) == (0.0, 60.0, 20.0, 80.0)
    to_source_end = heard_earlier(Piece(20.0, 30.0, 80.0, 90.0, 0.9, 1.0, 60.0), (0.0, 60.0), (0.0, 90.0))
    assert (to_source_end.q_start, to_source_end.q_end) == pytest.approx((20.0 - HEARD_LAG_S, 30.0))
    assert heard_earlier(a, (0.0, 60.0), (0.0, 90.0), lag=0.0) == a


def test_align_pair_reports_a_copy_found_by_sound_alone_a_lag_earlier(monkeypatch):
    """Through ``align_pair``: a copy of source sound 30-50 s at query 20-40 s, pictures unrelated,
    is reported ``HEARD_LAG_S`` earlier than the windows and codes alone put it."""
    rng = np.random.default_rng(4)
    qw = np.stack([np.arange(0, 56), np.arange(0, 56) + 5.0], 1).astype(float)
    sw = np.stack([np.arange(0, 76), np.arange(0, 76) + 5.0], 1).astype(float)
    asim = rng.uniform(0.2, 0.45, (len(qw), len(sw)))
    for i in range(len(qw)):
        if qw[i, 0] >= 20 and qw[i, 1] <= 40:
            asim[i, i + 10] = 0.92
    tq, ts = np.arange(60) + 0.5, np.arange(80) + 0.5
    vsim = rng.uniform(-0.05, 0.1, (60, 80))
    (m,) = align_pair("q", "s", tq, ts, vsim, qw, sw, asim, CFG)
    monkeypatch.setattr(align_module, "heard_earlier", lambda a, q_ext, s_ext: a)
    (unmoved,) = align_pair("q", "s", tq, ts, vsim, qw, sw, asim, CFG)
    assert m.modalities == unmoved.modalities == ("audio",)
    lag = pytest.approx((HEARD_LAG_S, HEARD_LAG_S), abs=0.011)
    assert (unmoved.q_start - m.q_start, unmoved.q_end - m.q_end) == lag
    assert (unmoved.s_start - m.s_start, unmoved.s_end - m.s_end) == lag
