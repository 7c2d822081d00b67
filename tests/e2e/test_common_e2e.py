"""Common segments on real media: one 5 s intro (picture and sound) concatenated by ffmpeg before
seven unrelated bodies, indexed through the real pipeline (SSCD, MFCC windows, Chromaprint, the
Milvus copy's projection). The intro is reported as common with its count, no match claims it as
copied, and a re-encoded copy of one video is still its duplicate. (The library of 20 is
tests/match/test_common.py, on synthetic features; here 7 videos of moving, seeded test
sources, so the bodies are unrelated, with ``common.min_videos: 4``.)"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from astradup.catalog import Catalog
from astradup.config import load_config
from astradup.dedup.job import live_ids, run_job
from astradup.dedup.store import read_pairs
from astradup.pipeline import index
from astradup.search import Query, Searcher
from tests.media import make_copy, make_video, run_ffmpeg

INTRO_S = 5
# moving, seeded test sources unlike the intro (gradients and rgbtest are too flat or still to tell
# apart, another mandelbrot looks like the intro itself)
BODIES = ("testsrc2", "life", "cellauto", "boxes", "life", "cellauto", "boxes")


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("common_e2e")
    lib, parts = root / "lib", root / "parts"
    lib.mkdir()
    parts.mkdir()
    intro = make_video(parts / "intro.mp4", seconds=INTRO_S, size=(160, 120), source="mandelbrot", audio="music",
                       seed=99)  # a moving channel ident with a jingle
    for i, source in enumerate(BODIES):
        body = make_video(parts / f"body{i}.mp4", seconds=10, size=(160, 120), source=source,
                          audio=("music", "noise", "sine")[i % 3], seed=i + 1)
        run_ffmpeg("-y", "-i", str(intro), "-i", str(body), "-filter_complex",
                   "[0:v][0:a][1:v][1:a]concat=n=2:v=1:a=1[v][a]", "-map", "[v]", "-map", "[a]",
                   "-c:v", "libx264", "-preset", "ultrafast", "-crf", "23", "-c:a", "aac", str(lib / f"v{i}.mp4"))
    copy = make_copy(lib / "v3.mp4", root / "copy_v3.mp4", vf="scale=144:108", crf=30)
    cfg = load_config(overrides={"data_dir": str(root / "data"), "common": {"min_videos": 4},
                                 "pipeline": {"dashboard": False, "decode_concurrency": 1}})
    cat = Catalog(cfg)
    rep = index([str(lib)], cfg, catalog=cat)
    assert rep.indexed == len(BODIES) and not rep.failed, rep.summary()
    ids = {Path(u).name: v for v, u in live_ids(cat.shards).items()}
    searcher = Searcher(cfg, cat)
    yield {"cfg": cfg, "searcher": searcher, "ids": ids, "copy": copy, "root": root}
    cat.vectors.close()


def _indexed(library, name: str) -> Query:
    s, vid = library["searcher"], library["ids"][name]
    return Query(s.catalog.shards.load_features([vid])[vid], None)


def test_the_intro_is_common_and_copied_from_no_one(library):
    s, ids = library["searcher"], library["ids"]
    off = Searcher(dataclasses.replace(s.cfg, common=dataclasses.replace(s.cfg.common, min_videos=0)), s.catalog)
    for name in ("v0.mp4", "v5.mp4"):
        q = _indexed(library, name)
        matches, common = s.search_common(q, top=20, exclude=ids[name], include_none=True)
        assert len(common) == 1, common
        c = common[0]
        assert c.q_start <= 0.5 and INTRO_S - 1 <= c.q_end <= INTRO_S + 1.5 and c.videos >= 4, c
        assert all(m.label == "none" and not m.segments and m.audio_copy is None for m in matches), matches
        # the control: without the rule the intro is a copied segment of some other video
        before, _ = off.search_common(q, top=20, exclude=ids[name], include_none=False)
        assert any(sg.q_start < INTRO_S - 1 for m in before for sg in m.segments), before


def test_a_reencoded_copy_is_still_a_duplicate_and_the_job_pairs_nothing_else(library):
    s, ids = library["searcher"], library["ids"]
    matches, common = s.search_common(s.query_from_file(str(library["copy"])), top=5, include_none=False)
    assert common and common[0].q_start <= 0.5
    assert [m.source_id for m in matches] == [ids["v3.mp4"]], matches
    assert matches[0].label in ("duplicate", "near-duplicate")
    assert all(sg.q_start >= INTRO_S - 1 for sg in matches[0].segments), matches[0].segments
    summary = run_job(s.cfg, batch_size=4, searcher=s)
    assert summary.batches_done == 2
    # Two bodies of one seeded generator may still look alike (drawn boxes, cellular patterns):
    # what the job must not pair is the intro.
    for (a, b), (q, m) in read_pairs(s.cfg).items():
        assert m.label == "none" and m.segments, (a, b, m)
        assert all(sg.q_start >= INTRO_S - 1 and sg.s_start >= INTRO_S - 1 for sg in m.segments), (a, b, m)


def test_asking_more_neighbours_only_for_rows_that_may_be_common_changes_nothing(library, monkeypatch):
    """The second KNN pass (common.search_k neighbours) goes only to rows that may be common
    (match/common.may_be_common: the min_videos-th hit reaches the common floor, and for audio a
    match there is supported); asking it for every row finds the same candidates and segments."""
    import astradup.search as search_module

    s, ids = library["searcher"], library["ids"]
    queries = {v: s.catalog.shards.load_features([v])[v] for v in ids.values()}
    two_pass = {v: s.knn(Query(f, None), exclude=v, pruned=True) for v, f in queries.items()}
    batched = s.knn_many(queries, pruned=True)
    asked = []
    real = search_module.may_be_common

    def every_row(hits, floor, min_videos, max_cover, videos=()):
        asked.append((len(real(hits, floor, min_videos, max_cover, videos)), len(hits)))
        return list(range(len(hits)))

    monkeypatch.setattr(search_module, "may_be_common", every_row)
    one_pass = {v: s.knn(Query(f, None), exclude=v, pruned=True) for v, f in queries.items()}
    for v in queries:
        # as sets: an approximate index (HNSW on Lite) may order near-equal top hits differently
        # when asked for more of them
        assert set(two_pass[v].candidates) == set(one_pass[v].candidates) == set(batched[v].candidates)
        assert two_pass[v].common == one_pass[v].common == batched[v].common
        assert two_pass[v].common  # the intro is found through the second pass
    deep, rows = map(sum, zip(*asked))
    assert 0 < deep < rows / 2  # the intro's rows, not the bodies'
