"""Alignment on hand-made similarity matrices: the shapes copies leave in the (query t, source t) plane."""
import numpy as np
import pytest

from astradup.config import SegmentConfig
from astradup.match.align import align, align_pair

CFG = SegmentConfig()
RNG = np.random.default_rng(0)


def frame_times(n):
    return np.arange(n) + 0.5


def background(nq, ns):
    return RNG.uniform(0.0, 0.2, (nq, ns))  # unrelated frames: SSCD inner products ~0-0.2


def paint_line(sim, tq, ts, q0, q1, slope, offset, value=0.85):
    for i, t in enumerate(tq):
        if q0 <= t < q1:
            j = int(np.argmin(np.abs(ts - (slope * t + offset))))
            sim[i, j] = value
    return sim


def test_plain_copy_found_with_exact_boundaries():
    tq, ts = frame_times(40), frame_times(60)
    sim = paint_line(background(40, 60), tq, ts, 10, 30, 1.0, 15.0)
    (p,) = align(tq, ts, sim, CFG.visual_lo, CFG.visual_hi, CFG)
    assert (p.q_start, p.q_end) == (10.0, 30.0)
    assert (p.s_start, p.s_end) == pytest.approx((25.0, 45.0))
    assert p.slope == pytest.approx(1.0) and p.score > 0.9


def test_speed_change_gives_slope_and_source_span():
    tq, ts = frame_times(30), frame_times(40)
    sim = paint_line(background(30, 40), tq, ts, 0, 30, 1.1, 0.0)  # speed_1.1: source 0-33 -> query 0-30
    (p,) = align(tq, ts, sim, CFG.visual_lo, CFG.visual_hi, CFG)
    assert p.slope == pytest.approx(1.1, abs=0.02)
    assert p.q_start == 0.0 and p.q_end == 30.0
    assert p.s_start == pytest.approx(0.0, abs=0.6) and p.s_end == pytest.approx(33.0, abs=1.1)


def test_isolated_hits_and_noise_give_nothing():
    tq, ts = frame_times(40), frame_times(40)
    sim = background(40, 40)
    for i, j in [(3, 30), (17, 2), (25, 11), (36, 36)]:
        sim[i, j] = 0.9
    assert align(tq, ts, sim, CFG.visual_lo, CFG.visual_hi, CFG) == []


def test_two_pieces_of_one_source_are_two_segments():
    tq, ts = frame_times(50), frame_times(80)
    sim = background(50, 80)
    paint_line(sim, tq, ts, 0, 15, 1.0, 5.0)
    paint_line(sim, tq, ts, 30, 45, 1.0, 30.0)
    got = sorted((p.q_start, p.q_end, p.s_start, p.s_end) for p in
                 align(tq, ts, sim, CFG.visual_lo, CFG.visual_hi, CFG))
    assert got == [pytest.approx((0.0, 15.0, 5.0, 20.0)), pytest.approx((30.0, 45.0, 60.0, 75.0))]


def test_short_copy_is_dropped():
    tq, ts = frame_times(30), frame_times(30)
    sim = paint_line(background(30, 30), tq, ts, 10, 12, 1.0, 0.0)  # 2 s < min_len
    assert align(tq, ts, sim, CFG.visual_lo, CFG.visual_hi, CFG) == []


def test_gap_from_an_overlay_is_bridged():
    tq, ts = frame_times(40), frame_times(40)
    sim = paint_line(background(40, 40), tq, ts, 5, 35, 1.0, 0.0)
    sim[18:21] = 0.1  # three frames hidden by an overlay
    (p,) = align(tq, ts, sim, CFG.visual_lo, CFG.visual_hi, CFG)
    assert (p.q_start, p.q_end) == (5.0, 35.0)


def test_fade_to_black_inside_a_copy_is_not_a_gap():
    tq, ts = frame_times(40), frame_times(40)
    sim = paint_line(background(40, 40), tq, ts, 5, 35, 1.0, 0.0)
    valid = np.ones(40, bool)
    valid[15:24] = False  # 9 s of black: matches nothing, but hides nothing either
    sim[15:24] = 0.0
    assert len(align(tq, ts, sim, CFG.visual_lo, CFG.visual_hi, CFG)) == 2
    (p,) = align(tq, ts, sim, CFG.visual_lo, CFG.visual_hi, CFG, q_valid=valid)
    assert (p.q_start, p.q_end) == (5.0, 35.0)


def test_audio_alone_finds_a_copy_whose_picture_was_replaced():
    # windows of 5 s every 1 s; the query re-uses source audio 20-40 s at query 0-20 s
    qw = np.stack([np.arange(0, 21), np.arange(0, 21) + 5.0], 1).astype(float)
    sw = np.stack([np.arange(0, 56), np.arange(0, 56) + 5.0], 1).astype(float)
    asim = RNG.uniform(0.2, 0.45, (len(qw), len(sw)))
    for i in range(len(qw)):
        if qw[i, 1] <= 20:
            asim[i, i + 20] = 0.92
    tq, ts = frame_times(20), frame_times(60)
    vsim = background(20, 60)  # pictures unrelated
    (m,) = align_pair("q", "s", tq, ts, vsim, qw, sw, asim, CFG)
    assert m.modalities == ("audio",)
    assert m.q_start == pytest.approx(0.0, abs=0.6) and m.q_end == pytest.approx(20.0, abs=1.1)
    assert m.s_start == pytest.approx(20.0, abs=0.6) and m.s_end == pytest.approx(40.0, abs=1.1)


def test_audio_replaced_copy_still_found_by_vision_and_both_confirm():
    tq, ts = frame_times(30), frame_times(30)
    vsim = paint_line(background(30, 30), tq, ts, 0, 30, 1.0, 0.0)
    w = np.stack([np.arange(0, 26), np.arange(0, 26) + 5.0], 1).astype(float)
    (only_visual,) = align_pair("q", "s", tq, ts, vsim, w, w, RNG.uniform(0.2, 0.45, (26, 26)), CFG)
    assert only_visual.modalities == ("visual",)
    asim = RNG.uniform(0.2, 0.45, (26, 26))
    np.fill_diagonal(asim, 0.95)
    (both,) = align_pair("q", "s", tq, ts, vsim, w, w, asim, CFG)
    assert both.modalities == ("visual", "audio")
    assert (both.q_start, both.q_end) == (0.0, 30.0)  # visual boundaries kept


def test_one_place_per_query_second_across_sources():
    from astradup.match.align import suppress_overlaps
    from astradup.records import SegmentMatch

    true = SegmentMatch("q", 0, 20, "src_a", 5, 25, 1.0, ("visual", "audio"))
    lookalike = SegmentMatch("q", 2, 20, "src_b", 0, 18, 1.0, ("visual",))  # same score, sight only
    weaker = SegmentMatch("q", 10, 18, "src_c", 0, 8, 0.7, ("visual",))
    second_part = SegmentMatch("q", 20, 35, "src_d", 0, 15, 0.9, ("visual",))  # a compilation's next part
    kept = suppress_overlaps([lookalike, weaker, second_part, true])
    assert kept == [true, second_part]
