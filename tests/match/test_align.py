"""Alignment on hand-made similarity matrices: the shapes copies leave in the (query t, source t) plane."""
import numpy as np
import pytest

from astradup.config import SegmentConfig
from astradup.match.align import Piece, align, align_pair
from astradup.match.motion import lines_motion, motion_agreement, query_steps
from astradup.match.modalities import HEARD_LAG_S

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


def test_a_wrong_slope_a_little_more_alike_than_the_copys_line_loses_to_slope_one():
    """After a crop of panning footage, a steep line through alike frames elsewhere in the source
    can be a few hundredths more alike per second than the copy's own unsped line (SLOPE_PRIOR)."""
    tq, ts = frame_times(30), frame_times(60)
    sim = paint_line(background(30, 60), tq, ts, 10, 20, 1.0, 5.0, value=0.80)  # the copy: s 15-25
    sim = paint_line(sim, tq, ts, 10, 20, 0.8, 28.0, value=0.82)  # the decoy: s 36-44, slope 0.8
    p = max(align(tq, ts, sim, CFG.visual_lo, CFG.visual_hi, CFG), key=lambda x: x.q_end - x.q_start)
    assert (p.q_start, p.q_end) == (10.0, 20.0)
    assert p.slope == pytest.approx(1.0, abs=0.02) and p.s_start == pytest.approx(15.0, abs=0.6)


def test_a_short_copy_of_a_long_still_shot_lands_where_its_frames_are_most_alike():
    """The source shows one picture for 30 s; every frame of it matches the 3 s copy past
    ``visual_hi``, so every offset gets the same vote. The copied seconds (20-23) are a little more
    alike than the rest, and the line goes there, not to the first seconds of the shot."""
    tq, ts = frame_times(40), frame_times(40)
    sim = background(40, 40)
    sim[10:13, 0:30] = 0.92  # query 10-13 against the whole still shot
    sim = paint_line(sim, tq, ts, 10, 13, 1.0, 10.0, value=0.935)
    (p,) = align(tq, ts, sim, CFG.visual_lo, CFG.visual_hi, CFG)
    assert (p.q_start, p.q_end) == (10.0, 13.0)
    assert (p.s_start, p.s_end) == pytest.approx((20.0, 23.0))
    sim = background(40, 40)
    sim[10:13, 0:30] = 0.92  # without the copied seconds standing out there is nothing to go by
    (p,) = align(tq, ts, sim, CFG.visual_lo, CFG.visual_hi, CFG)
    assert (p.q_start, p.q_end) == (10.0, 13.0)


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
    # windows of 5 s every 1 s, each inside its video; the query re-uses source audio 20-40 s at query 0-20 s
    qw = np.stack([np.arange(0, 16), np.arange(0, 16) + 5.0], 1).astype(float)
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


def _sound_copied(qw, sw, q0, q1, offset, held=3.5, lag=HEARD_LAG_S):
    """Audio similarities of windows ``qw`` x ``sw`` when query seconds q0-q1 are source seconds
    q0+offset..q1+offset: a window pair matches where ``held`` s or more of the query window is
    copied sound and the source window is its aligned place, as real 5 s windows do; a window
    holds the sound of ``lag`` seconds before its times, as real windows' items do
    (match/modalities.py ``HEARD_LAG_S``)."""
    asim = RNG.uniform(0.2, 0.45, (len(qw), len(sw)))
    for i, (a, b) in enumerate(qw):
        if min(b - lag, q1) - max(a - lag, q0) >= held:
            asim[i, np.argmin(np.abs(sw[:, 0] - (a + offset)))] = 0.92
    return asim


def test_a_short_sound_copy_is_bounded_where_its_windows_stop_matching_not_half_a_window_out():
    # a 6 s excerpt of sound inside a 60 s query, query windows every 0.5 s (audio.query_step)
    qw = np.stack([np.arange(0, 55.5, 0.5), np.arange(0, 55.5, 0.5) + 5.0], 1)
    sw = np.stack([np.arange(0, 36.0), np.arange(0, 36.0) + 5.0], 1)
    asim = _sound_copied(qw, sw, 20, 26, -10)
    tq, ts = frame_times(60), frame_times(40)
    (m,) = align_pair("q", "s", tq, ts, background(60, 40), qw, sw, asim, CFG)
    assert m.modalities == ("audio",)
    assert (m.q_start, m.q_end) == (pytest.approx(20, abs=0.6), pytest.approx(26, abs=0.6))
    assert (m.s_start, m.s_end) == (pytest.approx(10, abs=1.0), pytest.approx(16, abs=1.0))  # 1 s source grid
    # padded by half a window on each side, the same windows report 8.5-9 s for 6
    (wide,) = align_pair("q", "s", tq, ts, background(60, 40), qw, sw, asim, SegmentConfig(audio_edge=2.5))  # the old bounds
    assert wide.q_end - wide.q_start >= 8.4


def test_a_whole_soundtrack_copy_keeps_its_ends_at_the_videos_edges():
    # the query's sound is the source's seconds 10-40, and the source ends there: both runs of
    # matched windows end at a video's last window, where nothing beyond could match
    qw = np.stack([np.arange(0, 25.5, 0.5), np.arange(0, 25.5, 0.5) + 5.0], 1)
    sw = np.stack([np.arange(0, 36.0), np.arange(0, 36.0) + 5.0], 1)
    (m,) = align_pair("q", "s", frame_times(30), frame_times(40), background(30, 40), qw, sw,
                      _sound_copied(qw, sw, 0, 30, 10), CFG)
    assert (m.q_start, m.q_end) == (pytest.approx(0, abs=0.1), pytest.approx(30, abs=0.1))
    assert (m.s_start, m.s_end) == (pytest.approx(10, abs=0.6), pytest.approx(40, abs=0.6))


def test_audio_edge_beyond_the_pad_is_refused():
    from astradup.config import ConfigError, load_config
    with pytest.raises(ConfigError, match="segments.audio_edge"):
        load_config(overrides={"segments": {"audio_edge": 3.0}})


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


# ---------------------------------------------------------------- distinctiveness

def _short_copy(value=0.85):
    tq, ts = frame_times(40), frame_times(30)
    sim = paint_line(background(40, 30), tq, ts, 20, 24, 1.0, -12.0, value)  # 4 s of source 8-12 s
    return tq, ts, sim


def _pair(tq, ts, sim, bg=None, embeddings=None):
    none = np.zeros((0, 2))
    return align_pair("q", "s", tq, ts, sim, none, none, None, CFG, embeddings=embeddings, background=bg)


def test_a_short_copy_unlike_anything_else_stands_despite_its_length():
    """4 s scores half under the length factor and is dropped; when no other candidate resembles
    those query seconds (background 0.15 against 0.85 here) the copy is distinctive and stands."""
    tq, ts, sim = _short_copy()
    assert _pair(tq, ts, sim) == []
    (m,) = _pair(tq, ts, sim, bg=np.full(len(tq), 0.15))
    assert (m.q_start, m.q_end) == (20.0, 24.0) and (m.s_start, m.s_end) == pytest.approx((8.0, 12.0))
    assert m.score >= CFG.min_score


def test_a_look_alike_that_other_videos_match_as_well_is_not_rescued():
    """The same 4 s match, but two other candidates match those query seconds as well (a photo pack,
    a static scene): no distinctiveness, so the length factor still drops it."""
    tq, ts, sim = _short_copy()
    assert _pair(tq, ts, sim, bg=np.full(len(tq), 0.84)) == []


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _repeating_source():
    """A source showing one picture twice (frames 0-12 and 12-24 alike frame by frame) and a query
    whose 10-22 s copy its second stretch: (tq, ts, sim, embeddings)."""
    tq, ts = frame_times(40), frame_times(30)
    sim = background(40, 30)
    paint_line(sim, tq, ts, 10, 22, 1.0, -10.0, 0.92)  # look-alike stretch: source 0-12 s
    paint_line(sim, tq, ts, 10, 22, 1.0, 2.0, 0.88)    # the copy: source 12-24 s
    rng = np.random.default_rng(3)
    se = rng.normal(size=(30, 16))
    qe = rng.normal(size=(40, 16))
    qe[10:22] = se[12:24] + 0.05 * rng.normal(size=(12, 16))  # the query moves with its source
    return tq, ts, sim, (_unit(qe), _unit(se))


def test_a_line_that_fails_motion_gives_way_to_the_copys_own_line():
    """A source showing one picture twice (frames 0-12 and 12-24 alike frame by frame) offers two
    lines for a 12 s copy of its second stretch; the first, slightly more similar, wins the vote but
    moves unlike the query. The span is aligned again without it and the copy's own line stands."""
    tq, ts, sim, emb = _repeating_source()
    (m,) = _pair(tq, ts, sim, embeddings=emb)
    assert (m.q_start, m.q_end) == (10.0, 22.0)
    assert (m.s_start, m.s_end) == pytest.approx((12.0, 24.0), abs=0.6)


def test_a_copy_whose_motion_stacked_edits_scrambled_stands_when_nothing_else_is_like_it():
    """A 12 s copy matched at 0.85 whose frames step unlike its source's (a crop, a flip and a speed
    change at once did that to a hard-benchmark copy: motion 0.04 along its true line), and no line
    through the span moves with the source: motion alone drops it. Far more like its source than any
    other candidate (background 0.02), it keeps ``unplaced_motion`` of its motion factor and stands;
    with the relief off, or matched as well by other videos (a look-alike), it does not."""
    import dataclasses

    tq, ts = frame_times(40), frame_times(30)
    sim = paint_line(background(40, 30), tq, ts, 10, 22, 1.0, 2.0, 0.85)  # source 12-24 s
    rng = np.random.default_rng(5)
    emb = (_unit(rng.normal(size=(40, 16))), _unit(rng.normal(size=(30, 16))))  # steps uncorrelated
    none = np.zeros((0, 2))
    pair = lambda cfg, bg: align_pair("q", "s", tq, ts, sim, none, none, None, cfg, embeddings=emb,  # noqa: E731
                                      background=np.full(len(tq), bg))
    (m,) = pair(CFG, 0.02)
    assert (m.q_start, m.q_end) == (10.0, 22.0) and (m.s_start, m.s_end) == pytest.approx((12.0, 24.0))
    assert m.score >= CFG.min_score
    assert pair(dataclasses.replace(CFG, unplaced_motion=0.0), 0.02) == []
    assert pair(CFG, 0.84) == []


def test_a_moving_line_still_wins_over_a_distinctive_one_that_does_not_move():
    """The relief above applies only when no line moves: on a source that shows one picture twice,
    both lines are equally distinctive, and the copy's own (moving) line is the one reported."""
    tq, ts, sim, emb = _repeating_source()
    (m,) = _pair(tq, ts, sim, bg=np.full(len(tq), 0.02), embeddings=emb)
    assert (m.s_start, m.s_end) == pytest.approx((12.0, 24.0), abs=0.6)


def test_a_sped_copy_of_a_flat_scene_is_checked_along_the_line_it_moves_on():
    """A 10% speed-up of a slow scene: every query second of the copy matches every source second
    of the scene alike (0.74), so the evidence vote cannot tell the slopes apart, and as many other
    candidates match it (no distinctiveness). Only motion tells the copy: its query steps follow
    the source's along slope 1.1. Re-aligned alone inside the band around that moving line, the
    span lands on slope 1.0 again, which moves with the source too little; checked along the
    moving line itself it is found, with the source span that speed-up covers. A query whose
    steps follow nothing in the source is not."""
    tq, ts = frame_times(40), frame_times(30)
    sim = background(40, 30)
    sim[10:20, 0:13] = 0.74  # query 10-20 s x source 0-13 s: one flat scene
    rng = np.random.default_rng(0)
    se, qe = rng.normal(size=(30, 16)), rng.normal(size=(40, 16)) * 5
    unrelated = _unit(qe.copy())
    for i in range(10, 20):  # the copy: source 0-11 s played in query 10-20 s
        qe[i] = se[int(np.argmin(np.abs(ts - 1.1 * (tq[i] - 10))))] + 0.5 * rng.normal(size=16)
    bg = np.full(len(tq), 0.74)
    (m,) = _pair(tq, ts, sim, bg=bg, embeddings=(_unit(qe), _unit(se)))
    assert (m.q_start, m.q_end) == (10.0, 20.0)
    assert (m.s_start, m.s_end) == pytest.approx((0.0, 11.0), abs=0.3)
    assert m.score >= CFG.min_score
    assert _pair(tq, ts, sim, bg=bg, embeddings=(unrelated, _unit(se))) == []


def _short_flat_copy(follow: bool, seed: int = 0):
    """A 7 s copy (query 10-17 s of source 12-19 s) inside a flat scene that matches every source
    second of 8-22 s alike: only motion can place it, and at a 3 s lag a 7 s span has 4 steps."""
    tq, ts = frame_times(40), frame_times(30)
    sim = background(40, 30)
    sim[10:17, 8:22] = 0.74
    rng = np.random.default_rng(seed)
    se, qe = rng.normal(size=(30, 16)), rng.normal(size=(40, 16)) * 5
    if follow:
        qe[10:17] = se[12:19] + 0.3 * rng.normal(size=(7, 16))
    return tq, ts, sim, (_unit(qe), _unit(se))


def test_a_copy_too_short_for_six_motion_steps_is_placed_by_its_motion_at_every_lag():
    """Re-aligning needs a line measured over 6 steps of 3 s; a 7 s copy offers 4, so on a flat
    scene its span stayed on the voted line, which does not move with the source, and was dropped.
    A shorter line is now taken when its motion holds at lags 1-3 together: the copy is found at
    its own seconds, while a query whose steps follow nothing in the source is still dropped, and
    with the fallback's bar out of reach the copy is dropped as before."""
    import astradup.match.align as align_mod

    bg = np.full(40, 0.74)  # as many other candidates match the scene: no distinctiveness
    tq, ts, sim, emb = _short_flat_copy(follow=True)
    (m,) = _pair(tq, ts, sim, bg=bg, embeddings=emb)
    assert (m.q_start, m.q_end) == (10.0, 17.0)
    assert (m.s_start, m.s_end) == pytest.approx((12.0, 19.0), abs=0.6)  # frames 1 s apart
    assert m.score >= CFG.min_score
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(align_mod, "SHORT_MOTION", 1.01)
        assert _pair(tq, ts, sim, bg=bg, embeddings=emb) == []
    tq, ts, sim, unrelated = _short_flat_copy(follow=False)
    assert _pair(tq, ts, sim, bg=bg, embeddings=unrelated) == []


def test_a_weak_copy_that_moves_with_its_source_counts_its_distinctiveness_as_sure():
    """Three stacked edits (a flip, a crop and grayscale on the hard benchmark) leave a 7 s copy's
    frames at 0.6 of its source. More like its source than the other candidates (background 0.3)
    but short of distinct_full, it was not lifted and fell under min_score. Its query moves with the
    source step by step, which no look-alike piece of dev40 or hard seeds 5-9 did: that movement
    lets its distinctiveness lift it. The same match without the movement, or shared with
    look-alikes, is not lifted."""
    tq, ts = frame_times(40), frame_times(30)
    sim = paint_line(background(40, 30), tq, ts, 10, 17, 1.0, 2.0, 0.6)  # source 12-19 s
    rng = np.random.default_rng(4)
    se, qe = rng.normal(size=(30, 16)), rng.normal(size=(40, 16))
    still = (_unit(qe.copy()), _unit(se))
    qe[10:17] = se[12:19] + 0.05 * rng.normal(size=(7, 16))
    moving = (_unit(qe), _unit(se))
    (m,) = _pair(tq, ts, sim, bg=np.full(len(tq), 0.3), embeddings=moving)
    assert (m.q_start, m.q_end) == (10.0, 17.0) and (m.s_start, m.s_end) == pytest.approx((12.0, 19.0))
    assert m.score >= CFG.min_score
    assert _pair(tq, ts, sim, bg=np.full(len(tq), 0.3), embeddings=still) == []
    assert _pair(tq, ts, sim, bg=np.full(len(tq), 0.6), embeddings=moving) == []


def test_backgrounds_are_each_query_frames_best_among_the_other_candidates():
    from astradup.match.scoring import backgrounds
    from astradup.records import VideoFeatures

    rng = np.random.default_rng(5)

    def video(vid, n):
        e = rng.normal(size=(n, 8)).astype(np.float32)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        return VideoFeatures(vid, f"/v/{vid}.mp4", np.arange(n, dtype=np.float32), e, np.zeros((n, 32), np.uint8),
                             np.zeros((0, 2), np.float32), np.zeros((0, 4), np.float32), np.zeros(0, np.uint32),
                             8.0, {})

    q = video("q", 6)
    cands = {v: video(v, n) for v, n in (("a", 5), ("b", 7), ("c", 4))}
    bgs = backgrounds(q, cands, CFG)
    best = {v: (q.embeddings @ s.embeddings.T).max(axis=1) for v, s in cands.items()}
    for v in cands:
        want = np.max([best[o] for o in cands if o != v], axis=0)
        np.testing.assert_allclose(bgs[v], want, rtol=1e-6)
    two = {v: cands[v] for v in ("a", "b")}  # one other candidate is too few to call anything distinctive
    assert backgrounds(q, two, CFG) == {"a": None, "b": None}


def _motion_by_hand(q_emb, s_emb, tq, ts, slope, offset, q0, q1, lag=3, min_motion=0.15):
    """The definition, one step at a time: nearest source frame to each end of each query step."""
    cos = []
    for i, t in enumerate(tq):
        if not (q0 <= t <= q1) or i + lag >= len(tq) or tq[i + lag] > q1:
            continue
        j = int(np.argmin(np.abs(ts - (slope * t + offset))))
        j2 = int(np.argmin(np.abs(ts - (slope * tq[i + lag] + offset))))
        dq, ds = q_emb[i + lag] - q_emb[i], s_emb[j2] - s_emb[j]
        nq, ns = float(np.linalg.norm(dq)), float(np.linalg.norm(ds))
        if nq > min_motion and ns > min_motion:
            cos.append(float(dq @ ds) / (nq * ns))
    return (float(np.mean(cos)) if cos else float("nan")), len(cos)


def test_motion_of_many_lines_at_once_equals_the_definition_line_by_line():
    rng = np.random.default_rng(3)
    walk = lambda n: np.cumsum(rng.normal(size=(n, 16)).astype(np.float32) * 0.3, axis=0)  # noqa: E731
    s_emb, tq, ts = walk(80), np.arange(40, dtype=np.float64), np.arange(80, dtype=np.float64) * 1.0
    q_emb = s_emb[10:50] + rng.normal(size=(40, 16)).astype(np.float32) * 0.05  # a copy of s 10..49
    q_emb[5:9] = q_emb[5]  # a still stretch: those steps do not move
    offsets = np.array([-3.0, 0.0, 7.5, 10.0, 10.4, 200.0])  # 200: far past the source's end
    steps = query_steps(q_emb, tq, 2.0, 35.0, 3)
    for slope in (0.8, 1.0, 1.25):
        means, counts = lines_motion(s_emb, tq, ts, steps, 3, slope, offsets)
        for off, m, n in zip(offsets, means, counts):
            want_m, want_n = _motion_by_hand(q_emb, s_emb, tq, ts, slope, off, 2.0, 35.0)
            assert n == want_n
            assert (np.isnan(m) and np.isnan(want_m)) or m == pytest.approx(want_m, abs=1e-6)  # float32 dots
            one = motion_agreement(q_emb, s_emb, tq, ts, Piece(2.0, 35.0, 0, 0, 0, slope, float(off)))
            assert one[1] == want_n
    # the copy's own line moves with the query; a line 7.5 s off does not
    m, _ = motion_agreement(q_emb, s_emb, tq, ts, Piece(2.0, 35.0, 0, 0, 0, 1.0, 10.0))
    far, _ = motion_agreement(q_emb, s_emb, tq, ts, Piece(2.0, 35.0, 0, 0, 0, 1.0, 17.5))
    assert m > 0.8 > far
    # a span with no whole step in it
    assert lines_motion(s_emb, tq, ts, query_steps(q_emb, tq, 3.0, 4.0, 3), 3, 1.0, offsets)[1].sum() == 0


def test_a_weakly_similar_short_copy_far_more_like_its_source_than_anything_else_is_lifted():
    """Stacked edits leave a 4 s copy's frames only moderately like their source (0.6 here): relieved
    of its length it still scores under min_score. Far more like its source than any other candidate
    (background 0.02), distinct_lift raises it over; the same match that look-alikes share is not."""
    import dataclasses

    tq, ts, sim = _short_copy(value=0.6)
    off = dataclasses.replace(CFG, distinct_lift=0.0)
    none = np.zeros((0, 2))
    pair = lambda cfg, bg: align_pair("q", "s", tq, ts, sim, none, none, None, cfg, background=bg)  # noqa: E731
    assert pair(off, np.full(len(tq), 0.02)) == []  # relief alone is not enough
    (m,) = pair(CFG, np.full(len(tq), 0.02))
    assert (m.q_start, m.q_end) == (20.0, 24.0) and m.score >= CFG.min_score
    assert pair(CFG, np.full(len(tq), 0.3)) == []  # 0.3 better than the rest: relieved, not lifted
    assert pair(CFG, np.full(len(tq), 0.59)) == []  # a look-alike's match


def test_a_short_copy_beside_a_strong_copy_of_the_same_source_is_reported_at_its_evidence():
    """The query took 10-25 s of the source (found at full score) and, later, 4 s of it that alone
    score half under the length factor and that other candidates resemble nearly as well (a
    recoloured wallpaper: 0.08 less). Beside the strong copy it is reported at its evidence; alone,
    or when another candidate matches it as well (distinctiveness under 0.05), it is not."""
    import dataclasses

    tq, ts = frame_times(60), frame_times(40)
    sim = paint_line(background(60, 40), tq, ts, 10, 25, 1.0, 0.0, 0.95)  # source 10-25 s
    lone = paint_line(background(60, 40), tq, ts, 40, 44, 1.0, -10.0, 0.75)  # the 4 s copy alone
    paint_line(sim, tq, ts, 40, 44, 1.0, -10.0, 0.75)  # source 30-34 s
    none = np.zeros((0, 2))
    best = sim.max(axis=1)
    pair = lambda s, cfg, bg: align_pair("q", "s", tq, ts, s, none, none, None, cfg, background=bg)  # noqa: E731

    got = pair(sim, CFG, best - 0.08)
    assert [(m.q_start, m.q_end) for m in got] == [(10.0, 25.0), (40.0, 44.0)]
    short = got[1]
    assert (short.s_start, short.s_end) == pytest.approx((30.0, 34.0))
    assert short.score == pytest.approx((0.75 - CFG.visual_lo) / (CFG.visual_hi - CFG.visual_lo), abs=0.01)
    assert [(m.q_start, m.q_end) for m in pair(sim, dataclasses.replace(CFG, sibling_from=2.0), best - 0.08)] \
        == [(10.0, 25.0)]  # turned off
    assert [(m.q_start, m.q_end) for m in pair(sim, CFG, best - 0.02)] == [(10.0, 25.0)]  # a look-alike's match
    assert pair(lone, CFG, lone.max(axis=1) - 0.08) == []  # no strong copy of this source beside it


def _half_moving(noise: float, seed: int = 6):
    """An 8 s copy at 0.6 (source 12-20 s) whose query frames follow the source's steps through
    ``noise``: (tq, ts, sim, embeddings, motion agreement along the copy's line)."""
    tq, ts = frame_times(40), frame_times(30)
    sim = paint_line(background(40, 30), tq, ts, 10, 18, 1.0, 2.0, 0.6)
    rng = np.random.default_rng(seed)
    se, qe = rng.normal(size=(30, 16)), rng.normal(size=(40, 16))
    qe[10:18] = se[12:20] + noise * rng.normal(size=(8, 16))
    emb = (_unit(qe), _unit(se))
    m, _ = motion_agreement(emb[0], emb[1], tq, ts, Piece(10.0, 18.0, 12.0, 20.0, 0.6, 1.0, 2.0), lag=CFG.motion_lag)
    return tq, ts, sim, emb, m


def test_a_copy_past_distinct_full_that_moves_with_its_source_at_all_is_sure():
    """Overlay and a flip leave an 8 s copy of a nearly still source at 0.6, moving with it only
    partly (hard seed 6: agreement 0.36), while the other candidates match those seconds at 0.1.
    Past distinct_full, some movement with the source is enough to rule out a still look-alike
    (those moved at most 0.24): it is reported. Without the movement, or with other videos as like
    it, it is not."""
    tq, ts, sim, emb, m = _half_moving(2.8)
    assert CFG.motion_lo < m < CFG.motion_full  # moves with its source, but not fully
    (p,) = _pair(tq, ts, sim, bg=np.full(len(tq), 0.1), embeddings=emb)
    assert (p.q_start, p.q_end) == (10.0, 18.0) and (p.s_start, p.s_end) == pytest.approx((12.0, 20.0))
    assert p.score >= CFG.min_score
    *_, still, m_still = _half_moving(50.0)
    assert m_still < CFG.motion_lo
    assert _pair(tq, ts, sim, bg=np.full(len(tq), 0.1), embeddings=still) == []
    assert _pair(tq, ts, sim, bg=np.full(len(tq), 0.3), embeddings=emb) == []


def test_between_two_diagonals_of_a_still_shot_each_query_second_takes_its_more_similar_cell():
    """Hard seed 6: a 3 s copy (query 66-69 s) of source 32-35 s, the last three seconds of a 4 s
    shot (31-35 s). Every cell of the shot is clipped to weight 1, the voted line fell between two
    diagonals, and each query second took the earlier of its two equally near cells: the copy was
    placed at 31-34 s (source IoU 0.5). Taking the more similar cell of such a tie places it within
    half a second."""
    tq, ts = frame_times(100), frame_times(60)
    sim = RNG.uniform(0.0, 0.1, (100, 60))
    shot = {66: [0.59, 0.60, 0.59, 0.84, 0.88, 0.89, 0.86, 0.66], 67: [0.59, 0.60, 0.60, 0.84, 0.86, 0.88, 0.85, 0.66],
            68: [0.59, 0.60, 0.60, 0.84, 0.87, 0.89, 0.86, 0.67]}  # source columns 28-35
    for row, values in shot.items():
        sim[row, 28:36] = values
    (p,) = align(tq, ts, sim, CFG.visual_lo, CFG.visual_hi, CFG)
    assert (p.q_start, p.q_end) == (66.0, 69.0)
    overlap = min(p.s_end, 35.0) - max(p.s_start, 32.0)
    assert overlap / (max(p.s_end, 35.0) - min(p.s_start, 32.0)) >= 0.75
