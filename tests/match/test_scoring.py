"""match/scoring.py on hand-made features: the evidence of a pair, and its segments with the other
candidates as background (no decoding, no index)."""
from __future__ import annotations

import numpy as np

from astradup.config import ScoreConfig, SegmentConfig
from astradup.match.scoring import backgrounds, informative, informative_rows, mutual_coverage, pair_evidence, pair_segments
from astradup.records import VideoFeatures

RNG = np.random.default_rng(11)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def video(vid: str, emb: np.ndarray, **meta) -> VideoFeatures:
    t = len(emb)
    return VideoFeatures(vid, f"/v/{vid}.mp4", np.arange(t, dtype=np.float32) + 0.5, emb,
                         RNG.integers(0, 256, (t, 32), dtype=np.uint8), np.zeros((0, 2), np.float32), np.zeros((0, 4), np.float32),
                         np.zeros(0, np.uint32), 8.0, {"duration": float(t), **meta})


def test_mutual_coverage_is_the_weaker_direction():
    """An excerpt covers itself inside the long video but not the other way round."""
    sim = np.zeros((4, 10))
    sim[np.arange(4), np.arange(4)] = 1.0
    assert mutual_coverage(sim) == 0.4
    assert mutual_coverage(np.zeros((0, 3))) == 0.0


def test_blank_and_common_frames_carry_no_evidence():
    f = video("a", unit(RNG.normal(size=(6, 8))), blank_frames=[0, 5], common_frames=[2])
    assert informative(f).tolist() == [False, True, False, True, True, False]
    all_blank = video("b", unit(RNG.normal(size=(3, 8))), blank_frames=[0, 1, 2])
    assert informative(all_blank).all()  # nothing informative: every frame counts rather than none


def test_informative_rows_index_without_copying_when_every_row_is_kept():
    """A full mask as an index copies a long video's products; the helper hands back a slice then."""
    every = video("c", unit(RNG.normal(size=(4, 8))))
    assert informative_rows(every) == slice(None)
    products = np.arange(16.0).reshape(4, 4)
    assert np.shares_memory(products[:, informative_rows(every)], products)
    some = video("d", unit(RNG.normal(size=(4, 8))), blank_frames=[1])
    assert np.asarray(informative_rows(some)).tolist() == [True, False, True, True]
    assert informative_rows(video("e", np.zeros((0, 8), np.float32))) == slice(None)


def test_a_whole_copy_is_visual_evidence_and_a_stranger_is_not():
    src = unit(RNG.normal(size=(20, 256)))  # wide, as embeddings are: strangers sit near 0
    copy = unit(src + 0.02 * RNG.normal(size=src.shape))
    other = unit(RNG.normal(size=(20, 256)))
    cfg = ScoreConfig()
    assert pair_evidence(video("q", copy), video("s", src), cfg).visual == 1.0
    assert pair_evidence(video("q", other), video("s", src), cfg).visual == 0.0


def test_distinctiveness_lifts_a_short_copy_only_while_nothing_else_resembles_it():
    """A 6 s excerpt of s inside a 30 s query scores under the length factor; with three unrelated
    candidates as background it scores more, and with a twin of s among them exactly as without."""
    rng = np.random.default_rng(1)
    s = unit(rng.normal(size=(20, 16)))
    q = unit(rng.normal(size=(30, 16)))
    q[10:16] = unit(s[5:11] + 0.2 * rng.normal(size=(6, 16)))
    cfg = SegmentConfig()
    qf, sf = video("q", q), video("s", s)
    (alone,) = pair_segments(qf, sf, cfg)
    strangers = {f"x{i}": video(f"x{i}", unit(rng.normal(size=(20, 16)))) for i in range(3)}
    (lifted,) = pair_segments(qf, sf, cfg, background=backgrounds(qf, {"s": sf, **strangers}, cfg)["s"])
    twin = video("t", unit(s + 0.01 * rng.normal(size=s.shape)))
    (shared,) = pair_segments(qf, sf, cfg, background=backgrounds(qf, {"s": sf, "t": twin, **strangers}, cfg)["s"])
    assert (alone.q_start, alone.q_end, alone.s_start) == (lifted.q_start, lifted.q_end, lifted.s_start) == (10, 16, 5)
    assert lifted.score > alone.score == shared.score


def test_a_copy_that_runs_to_a_videos_end_is_reported_inside_it():
    """Frames stand for half a second either side, so a whole copy of a 20.3 s source whose last
    frame is at 19.5 s ends at 20.0 on the frames' grid, and a container of 19.8 s is the limit;
    an unknown or damaged duration leaves the end as aligned."""
    rng = np.random.default_rng(2)
    s = unit(rng.normal(size=(20, 16)))
    q = unit(np.concatenate([rng.normal(size=(10, 16)), s + 0.05 * rng.normal(size=s.shape)]))
    cfg = SegmentConfig()
    (m,) = pair_segments(video("q", q, duration=29.9), video("s", s, duration=19.8), cfg)
    assert (m.q_start, m.q_end, m.s_start, m.s_end) == (10.0, 29.9, 0.0, 19.8)
    for unknown in (0.0, None, "n/a", float("nan"), -5.0):
        (m,) = pair_segments(video("q", q, duration=unknown), video("s", s, duration=unknown), cfg)
        assert (m.q_end, m.s_end) == (30.0, 20.0)
