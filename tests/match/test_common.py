"""Common segments (astradup/match/common.py): content many library videos share (a channel intro)
is reported once with its count and makes no two videos copies, in `search` and in the dedup job,
while a real copy of a video that opens with it is still found.

The library is synthetic features written through ``Catalog.write`` (Milvus Lite under tmp_path, a
stand-in embedder of the features' size): one 5 s intro opens 20 unrelated 25 s videos; the intro's
frames, audio windows and Chromaprint are the same in all of them, up to a re-encode's noise.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from astradup.catalog import Catalog
from astradup.features.audio import vector_dim
from astradup.config import load_config
from astradup.dedup.job import run_job
from astradup.dedup.store import read_pairs
from astradup.errors import ConfigError
from astradup.match.common import (COMMON_FRAMES, CommonSegment, Support, common_rows, covering_videos, find_common,
                                   hit_time, inside, intervals, mask_pair, may_be_common, merge_segments, source_rows,
                                   supported_videos, without_rows)
from astradup.match.scoring import informative
from astradup.records import VideoFeatures
from astradup.search import Query, Searcher
from tests.synthetic_vectors import SizeOnlyEmbedder, noisy, unit, walk

D = 64
INTRO_S, BODY_S, N_VIDEOS = 5, 20, 20
HZ = 4.0  # Chromaprint sub-fingerprints per second


# ------------------------------------------------------------------ the pure functions


def test_a_row_is_common_when_many_distinct_videos_match_it():
    hits = [[("a", 0, 0.9), ("a", 1, 0.9), ("b", 0, 0.9), ("c", 0, 0.4)],  # a twice, c below the floor
            [("a", 2, 0.9), ("b", 1, 0.8), ("c", 1, 0.7), ("d", 0, 0.6)],
            [("x", 0, 0.2)]]
    mask, counts = common_rows(hits, floor=0.55, min_videos=3, max_cover=1.0)
    assert counts.tolist() == [2, 4, 0] and mask.tolist() == [False, True, False]
    off, _ = common_rows(hits, floor=0.55, min_videos=0, max_cover=1.0)
    assert not off.any()


def test_videos_that_cover_the_query_are_its_copies_and_do_not_count():
    # four copies match every row; "i1".."i3" share only the first row (an intro)
    rows = [[(v, 0, 0.9) for v in ("c1", "c2", "c3", "c4", "i1", "i2", "i3")]] + \
           [[(v, t, 0.9) for v in ("c1", "c2", "c3", "c4")] for t in range(1, 4)]
    assert covering_videos([{h[0] for h in r} for r in rows], 0.5) == {"c1", "c2", "c3", "c4"}
    mask, counts = common_rows(rows, floor=0.5, min_videos=3, max_cover=0.5)
    assert counts.tolist() == [3, 0, 0, 0] and mask.tolist() == [True, False, False, False]


def test_common_rows_become_intervals_across_small_gaps_and_merge_across_modalities():
    t = np.array([0, 1, 2, 3, 4, 5, 10, 11], float)
    m = np.array([1, 1, 0, 1, 1, 0, 1, 1], bool)  # row 2 missed (a frame the index skips)
    c = np.array([9, 12, 0, 10, 8, 0, 5, 6])
    assert intervals(t, m, c, half=0.5, max_gap=2.0) == [(0.0, 4.5, 12), (9.5, 11.5, 6)]
    assert intervals(t, m, c, half=0.5, max_gap=0.0) == [(0.0, 1.5, 12), (2.5, 4.5, 10), (9.5, 11.5, 6)]
    segs = merge_segments([(0.0, 4.5, 12)], [(2.0, 5.5, 15), (20.0, 21.0, 3)], max_gap=1.0)
    assert segs == [CommonSegment(0.0, 5.5, 15, ("visual", "audio")), CommonSegment(20.0, 21.0, 3, ("audio",))]
    assert segs[0].to_dict() == {"q_start": 0.0, "q_end": 5.5, "videos": 15, "modalities": ["visual", "audio"]}
    assert inside(np.array([0, 5.5, 6, 20.5]), segs).tolist() == [True, True, False, True]


def test_find_common_from_frame_and_window_hits():
    many = [(f"v{i}", 0, 0.9) for i in range(10)]
    frame_hits = [many, many, many, [("v0", 3, 0.9)], []]
    window_hits = [many, [("v1", 0, 0.9)]]
    segs = find_common(np.arange(5.0), frame_hits, np.array([2.5, 3.5]), window_hits, 0.55, 0.7,
                       min_videos=8, max_cover=1.0, max_gap=1.0)
    assert segs == [CommonSegment(0.0, 3.0, 10, ("visual", "audio"))]
    assert find_common(np.arange(5.0), frame_hits, np.zeros(0), [], 0.55, 0.7, min_videos=0,
                       max_cover=1.0, max_gap=1.0) == []


def test_with_support_only_videos_matching_a_stretch_in_order_count():
    """Chance look-alikes (a video matching one window, or two windows at unrelated offsets) do not
    count; a video carrying the stretch (matching windows 3 s apart also 3 s apart in its own time,
    within the index's stride) does. The control without support counts them all."""
    t = np.array([0.0, 3.0, 6.0, 9.0, 12.0])  # window centres; the last two match nothing
    recurring = [[(f"r{i}", 10.0 + dt, 15.0 + dt, 0.9) for i in range(8)] for dt in (0.0, 3.0, 7.5)]
    chance = [[(f"c{i}", 40.0 * i, 40.0 * i + 5, 0.9) for i in range(8)], [], []]
    shuffled = [[("x", 50.0, 55.0, 0.9)], [("x", 20.0, 25.0, 0.9)], []]  # offset off by 33 s
    rows = [a + b + c for a, b, c in zip(recurring, chance, shuffled)] + [[], []]
    sup = Support(t, min_sep=2.5, tol=2.0)
    mask, counts = common_rows(rows, floor=0.5, min_videos=8, max_cover=1.0, support=sup)
    # row 2's hits sit 7.5 s after row 0's for 6 s of query: 1.5 s off, inside the stride's 2 s
    assert counts.tolist() == [8, 8, 8, 0, 0] and mask.tolist() == [True, True, True, False, False]
    off, off_counts = common_rows(rows, floor=0.5, min_videos=8, max_cover=1.0)
    assert off_counts.tolist() == [17, 9, 8, 0, 0]
    assert supported_videos(chance, 0.5, sup) == [set(), set(), set()]
    # a second match of the same video closer than min_sep (overlapping windows) is no support
    near = [[("y", 10.0, 15.0, 0.9)], [("y", 10.5, 15.5, 0.9)]]
    assert supported_videos(near, 0.5, Support(np.array([0.0, 0.5]), 2.5, 2.0)) == [set(), set()]
    assert hit_time(("v", 2.0, 0.9)) == 2.0 and hit_time(("v", 2.0, 7.0, 0.9)) == 4.5


def test_only_rows_that_may_be_common_ask_for_more_neighbours():
    """The second, deeper KNN request goes to rows whose min_videos-th hit reaches the floor; with
    support, only if some match there (not the query's copy) is supported: look-alikes that are all
    chance stay chance with more of them. Each query video's rows are judged on their own."""
    t = np.array([0.0, 3.0, 6.0, 9.0, 12.0, 15.0])
    chance = [(f"c{i}", 40.0 * i, 40.0 * i + 5, 0.9) for i in range(8)]
    copy = lambda dt: [("copy", dt, dt + 5, 0.95)]  # noqa: E731 (matches every row in order)
    stretch = lambda dt: [("r", 10.0 + dt, 15.0 + dt, 0.9)]  # noqa: E731
    rows = [copy(0) + chance, copy(3) + chance[:3], copy(6) + stretch(0) + chance, copy(9) + stretch(3) + chance,
            copy(12), copy(15)]
    assert may_be_common(rows, 0.5, 8, 0.5) == [0, 2, 3]  # no support: the 8th hit decides
    sup = Support(t, 2.5, 2.0)
    assert may_be_common(rows, 0.5, 8, 0.5, [(np.arange(6), sup)]) == [2, 3]
    assert may_be_common(rows, 0.5, 0, 0.5) == []
    # two query videos in one batch: judged as one video's rows, B's stretch would "support" A's
    # lone row 2, and A's copy, diluted among B's rows, would no longer read as a copy (row 0)
    b_rows = [[("r", 13.0, 18.0, 0.9)] + chance, [("r", 16.0, 21.0, 0.9)] + chance, [], [], []]
    both = rows[:3] + b_rows
    tb = np.array([9.0, 12.0, 15.0, 18.0, 21.0])
    groups = [(np.arange(3), Support(t[:3], 2.5, 2.0)), (np.arange(3, 8), Support(tb, 2.5, 2.0))]
    assert may_be_common(both, 0.5, 8, 0.5, groups) == [3, 4]
    mixed = [(np.arange(8), Support(np.concatenate([t[:3], tb]), 2.5, 2.0))]
    assert may_be_common(both, 0.5, 8, 0.5, mixed) == [0, 2, 3, 4]


def test_source_rows_are_those_closest_to_the_common_query_rows():
    sim = np.array([[0.9, 0.1, 0.2],   # common query row: like source row 0
                    [0.2, 0.95, 0.6],  # other query rows
                    [0.1, 0.3, 0.7]])
    assert source_rows(sim, np.array([True, False, False]), floor=0.55).tolist() == [True, False, False]
    assert source_rows(sim, np.array([False, False, False]), floor=0.55).tolist() == [False, False, False]


def _features(vid: str, emb: np.ndarray, audio: np.ndarray, chroma: np.ndarray, phash: np.ndarray,
              step: float = 1.0) -> VideoFeatures:
    t = len(emb)
    starts = np.arange(len(audio), dtype=np.float32) * step
    return VideoFeatures(vid, f"/lib/{vid}.mp4", np.arange(t, dtype=np.float32), emb.astype(np.float32), phash,
                         np.stack([starts, starts + 5.0], axis=1), audio.astype(np.float32),
                         chroma.astype(np.uint32), HZ,
                         {"duration": float(t), "width": 320, "height": 240, "fps": 25.0})


def test_masked_rows_leave_the_evidence_but_keep_the_rest():
    rng = np.random.default_rng(0)
    f = _features("q", unit(rng.normal(size=(6, D))), unit(rng.normal(size=(4, 8))),
                  rng.integers(0, 2 ** 32, 24, dtype=np.uint32), rng.integers(0, 256, (6, 32), dtype=np.uint8))
    g = without_rows(f, np.array([1, 1, 0, 0, 0, 0], bool), np.array([1, 0, 0, 0], bool))
    assert g.meta[COMMON_FRAMES] == [0, 1] and informative(g).tolist() == [False, False, True, True, True, True]
    assert len(g.audio_windows) == len(g.audio_vectors) == 3 and g.audio_windows[0, 0] == 1.0
    assert len(g.chromaprint) == 24 - int(5 * HZ) - 1  # the first window's 5 s of print (ends inclusive)
    assert len(f.audio_windows) == 4 and COMMON_FRAMES not in f.meta  # the input is untouched
    assert without_rows(f, np.zeros(6, bool), np.zeros(4, bool)) is f
    every = without_rows(f, np.ones(6, bool), np.zeros(4, bool))
    assert not informative(every).any()  # a query that is all common has no visual evidence left
    # a pair: the query's rows inside the segment, and the source's rows that are that content
    s = dataclasses.replace(f, video_id="s", embeddings=np.roll(f.embeddings, 2, axis=0))  # source: intro at 2-3
    q2, s2 = mask_pair(f, s, [CommonSegment(0.0, 1.5, 9, ("visual",))], 0.55, 0.7)
    assert q2.meta[COMMON_FRAMES] == [0, 1] and s2.meta[COMMON_FRAMES] == [2, 3]
    assert mask_pair(f, s, [], 0.55, 0.7) == (f, s)


def test_common_config_is_validated():
    assert load_config().common.min_videos >= 2
    with pytest.raises(ConfigError, match="common.search_k"):
        load_config(overrides={"common": {"min_videos": 20, "search_k": 16}})
    with pytest.raises(ConfigError, match="common.search_k"):
        load_config(overrides={"common": {"search_k": 5}})  # below search.top_k
    with pytest.raises(ConfigError, match="common.min_videos"):
        load_config(overrides={"common": {"min_videos": 1}})
    with pytest.raises(ConfigError, match="common.max_cover"):
        load_config(overrides={"common": {"max_cover": 0}})
    assert load_config(overrides={"common": {"min_videos": 0}}).common.min_videos == 0


# ------------------------------------------------------------------ a library with one intro


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("common")
    da = vector_dim(13)
    rng = np.random.default_rng(7)
    n = INTRO_S + BODY_S
    intro = walk(rng, INTRO_S, D)
    intro_audio = unit(rng.normal(size=da))
    intro_print = rng.integers(0, 2 ** 32, int(INTRO_S * HZ), dtype=np.uint32)
    intro_phash = rng.integers(0, 256, (INTRO_S, 32), dtype=np.uint8)
    feats = {}
    for i in range(N_VIDEOS):
        emb = np.concatenate([noisy(rng, intro, 0.15), walk(rng, BODY_S, D)])
        audio = walk(rng, n - 4, da)
        audio[0] = noisy(rng, intro_audio, 0.1)  # the window over the intro alone
        chroma = np.concatenate([intro_print, rng.integers(0, 2 ** 32, int(BODY_S * HZ), dtype=np.uint32)])
        phash = np.concatenate([intro_phash, rng.integers(0, 256, (BODY_S, 32), dtype=np.uint8)])
        vid = f"v{i:02d}"
        feats[vid] = _features(vid, emb, audio, chroma, phash)
    src = feats["v03"]
    copy = dataclasses.replace(src, video_id="copy_of_v03", uri="/lib/copy_of_v03.mp4",
                               embeddings=noisy(rng, src.embeddings, 0.15),
                               audio_vectors=noisy(rng, src.audio_vectors, 0.1))
    cfg = load_config(overrides={
        "data_dir": str(root / "data"), "vectors": {"projection": "none"},
        "pipeline": {"dashboard": False},
        # a copied segment from 4 s at full score: the shared 5 s intro alone *would* be one
        "segments": {"full_len": 4.0}})
    cat = Catalog(cfg, embedder=SizeOnlyEmbedder(D))
    cat.write(list(feats.values()) + [copy])
    searcher = Searcher(cfg, cat)
    yield {"cfg": cfg, "searcher": searcher, "feats": feats, "copy": copy, "root": root}
    cat.vectors.close()


def _search(searcher: Searcher, f: VideoFeatures, **kw):
    return searcher.search_common(Query(f, None), top=50, exclude=f.video_id, **kw)


def test_without_the_rule_the_intro_alone_makes_a_copy(library):
    """The control: with common segments off, the intro is listed as a segment copied from another
    video (the test below would prove nothing otherwise)."""
    s = library["searcher"]
    off = Searcher(dataclasses.replace(s.cfg, common=dataclasses.replace(s.cfg.common, min_videos=0)), s.catalog)
    matches, common = _search(off, library["feats"]["v00"], include_none=False)
    assert common == []
    copied = [sg for m in matches for sg in m.segments]  # every other video is unrelated to v00
    assert copied and all(sg.q_end <= INTRO_S + 1 for sg in copied), matches


def test_search_reports_the_intro_once_and_lists_no_sharer_as_a_copy(library):
    cfg, s = library["cfg"], library["searcher"]
    matches, common = _search(s, library["feats"]["v00"], include_none=True)
    assert len(common) == 1, common
    c = common[0]
    assert c.q_start <= 0.5 and INTRO_S - 1 <= c.q_end <= INTRO_S + 1.5, c
    assert c.videos >= cfg.common.min_videos and c.videos >= N_VIDEOS - 2  # the others, the copy too
    assert "visual" in c.modalities
    assert matches  # the sharers are candidates (they match the intro) ...
    for m in matches:  # ... and none is a copy: label none, no copied segment, no audio copy
        assert m.label == "none" and not m.segments and m.audio_copy is None, m
    shared = [m for m in matches if any(n.startswith("common content left out") for n in m.notes)]
    assert shared
    listed, again = _search(s, library["feats"]["v00"], include_none=False)
    assert listed == [] and again == common


def test_a_real_copy_of_a_video_with_the_intro_is_still_found(library):
    s = library["searcher"]
    matches, common = _search(s, library["copy"], include_none=False)
    assert [m.source_id for m in matches] == ["v03"], matches
    m = matches[0]
    assert m.label in ("duplicate", "near-duplicate"), m
    assert len(common) == 1 and common[0].videos >= s.cfg.common.min_videos
    # its copied stretch is the body: the intro is not claimed as copied from v03 either
    assert m.segments and min(sg.q_start for sg in m.segments) >= INTRO_S - 1.5, m.segments
    assert max(sg.q_end for sg in m.segments) >= INTRO_S + BODY_S - 2


def test_dedup_job_pairs_only_the_real_copy(library):
    s = library["searcher"]
    cfg = dataclasses.replace(library["cfg"], data_dir=str(library["root"] / "dedup_data"),
                              shards_dir=library["cfg"].resolved_shards_dir,
                              milvus_uri=library["cfg"].resolved_milvus_uri)
    s2 = Searcher(cfg, s.catalog)
    summary = run_job(cfg, batch_size=8, searcher=s2)
    assert summary.batches_done == 3 and len(summary.searched) == N_VIDEOS + 1
    pairs = read_pairs(cfg)
    assert set(pairs) == {("copy_of_v03", "v03")}, sorted(pairs)
    _, m = pairs[("copy_of_v03", "v03")]
    assert m.label in ("duplicate", "near-duplicate")


def test_cli_lists_each_common_segment_once_with_its_count():
    from astradup.commands.search import fmt_common

    text = fmt_common([CommonSegment(0.0, 4.5, 20, ("visual", "audio")), CommonSegment(30.0, 45.0, 9, ("audio",))])
    assert text.splitlines() == [
        "  common q 0.0-4.5 s: in 20 library videos (visual+audio), not counted as copying",
        "  common q 30.0-45.0 s: in 9 library videos (audio), not counted as copying"]
    assert fmt_common([]) == ""


def test_batched_knn_finds_the_same_common_segments_and_prunes_the_sharers(library):
    """The dedup job's batched KNN (match/selfjoin.py) sees the intro as one search does; pruned,
    a video that matched the query only inside it is not scored at all."""
    s, feats = library["searcher"], library["feats"]
    batch = {v: feats[v] for v in ("v00", "v01", "v02", "v03")}
    many = s.knn_many(batch)
    for v, f in batch.items():
        one = s.knn(Query(f, None), exclude=v)
        assert many[v].common == one.common and len(one.common) == 1, v
        assert set(many[v].candidates) == set(one.candidates), v
    q = Query(feats["v00"], None)
    full = s.knn(q, exclude="v00")
    pruned = s.knn(q, exclude="v00", pruned=True)
    assert len(full.candidates) == N_VIDEOS and pruned.candidates and set(pruned.candidates) <= set(full.candidates)
    assert pruned.common == full.common
    # the exact pre-check (selfjoin.could_match) sees the rows left once the intro is out: nothing
    # of a sharer can be reported, so none is scored; with the intro in, they all pass it
    assert s.score(q, pruned.candidates, pruned=True, common=pruned.common) == []
    assert len(s.score(q, pruned.candidates, pruned=True)) == len(pruned.candidates)
