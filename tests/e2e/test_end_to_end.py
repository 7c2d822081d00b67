"""Index + search end to end on a small generated corpus, through the real Ray Data pipeline,
Parquet shards and a Milvus Lite file; idempotent re-index, delete, reindex, broken files."""
from __future__ import annotations

import json

import pytest

from astradup.catalog import Catalog
from astradup.cli import main as cli_main
from astradup.config import load_config
from astradup.pipeline import index
from astradup.search import Searcher
from tests.media import make_broken, make_copy, make_video, run_ffmpeg

BROKEN = {"zero_byte": "empty", "truncated": "", "not_video": "not a media file",
          "no_video_stream": "no video stream"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    lib, queries = root / "library", root / "queries"
    lib.mkdir()
    queries.mkdir()
    a = make_video(lib / "a.mp4", seconds=12, size=(320, 240), source="mandelbrot", audio="music", seed=1)
    b = make_video(lib / "b.mp4", seconds=12, size=(320, 240), source="life", audio="music", seed=2)
    c = make_video(lib / "c.mp4", seconds=10, size=(320, 240), source="cellauto", audio=None, seed=3)
    for kind in BROKEN:
        make_broken(kind, lib / f"broken_{kind}.mp4")
    q = {
        "a_reencode": make_copy(a, queries / "a_reencode.mp4", vf="scale=240:180", codec="mpeg4"),
        "b_hflip": make_copy(b, queries / "b_hflip.mp4", vf="hflip", crf=30),
        "c_copy": make_copy(c, queries / "c_copy.mp4", crf=32),
        "unrelated": make_video(queries / "unrelated.mp4", seconds=10, size=(320, 240), source="gradients",
                                audio="music", seed=9),
    }
    filler = make_video(root / "filler.mp4", seconds=5, size=(320, 240), source="gradients", audio="noise", seed=7)
    excerpt = make_copy(b, root / "excerpt.mp4", start=2, seconds=8, crf=26)
    q["b_partial"] = queries / "b_partial.mp4"  # 5 s filler + b[2:10] + 5 s filler
    run_ffmpeg("-i", str(filler), "-i", str(excerpt), "-i", str(filler), "-filter_complex",
               "[0:v]scale=320:240,setsar=1[v0];[1:v]scale=320:240,setsar=1[v1];[2:v]scale=320:240,setsar=1[v2];"
               "[v0][0:a][v1][1:a][v2][2:a]concat=n=3:v=1:a=1[v][a]", "-map", "[v]", "-map", "[a]",
               "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(q["b_partial"]))
    cfg = load_config(overrides={"data_dir": str(root / "data"),
                                 "pipeline": {"dashboard": False, "decode_concurrency": 1}})
    report = index([str(lib)], cfg)
    return {"cfg": cfg, "report": report, "lib": lib, "q": q, "ids": {}}


def _by_name(report):
    return {u.rsplit("/", 1)[-1]: r for u, r in report.failed}


def test_index_reports_every_broken_file_and_indexes_the_rest(corpus):
    rep = corpus["report"]
    assert rep.indexed == 3
    failed = _by_name(rep)
    assert set(failed) == {f"broken_{k}.mp4" for k in BROKEN}
    for kind, word in BROKEN.items():
        assert failed[f"broken_{kind}.mp4"], kind
        assert word in failed[f"broken_{kind}.mp4"], (kind, failed[f"broken_{kind}.mp4"])
    status = Catalog(corpus["cfg"]).shards.latest_status()
    assert sorted(r["status"] for r in status.values()) == ["failed"] * 4 + ["ok"] * 3
    assert all(r["error"] for r in status.values() if r["status"] == "failed")


def _top(cfg, path):
    q, matches = Searcher(cfg).search_file(str(path))
    assert matches, path
    return q, matches[0]


def _uri_name(m):
    return m.source_uri.rsplit("/", 1)[-1]


def test_search_finds_reencode_flip_and_copy_without_audio(corpus):
    cfg, q = corpus["cfg"], corpus["q"]
    _, m = _top(cfg, q["a_reencode"])
    assert _uri_name(m) == "a.mp4" and m.label in ("duplicate", "near-duplicate"), m
    _, m = _top(cfg, q["b_hflip"])
    assert _uri_name(m) == "b.mp4" and m.label != "none", m
    query, m = _top(cfg, q["c_copy"])
    assert not query.features.has_audio
    assert _uri_name(m) == "c.mp4" and m.label in ("duplicate", "near-duplicate"), m
    assert "audio" not in m.scores and any("audio" in n for n in m.notes)


def test_unrelated_query_is_not_a_duplicate(corpus):
    _, matches = Searcher(corpus["cfg"]).search_file(str(corpus["q"]["unrelated"]))
    assert all(m.label in ("none", "similar") for m in matches), matches[:1]


def test_partial_copy_is_localised_on_both_time_axes(corpus):
    _, matches = Searcher(corpus["cfg"]).search_file(str(corpus["q"]["b_partial"]))
    segs = [(m, s) for m in matches for s in m.segments]
    assert len(segs) == 1, segs
    m, s = segs[0]
    assert _uri_name(m) == "b.mp4"
    assert abs(s.q_start - 5) <= 1.0 and abs(s.q_end - 13) <= 1.0, s
    assert abs(s.s_start - 2) <= 1.0 and abs(s.s_end - 10) <= 1.0, s
    assert "visual" in s.modalities


def test_unrelated_query_has_no_segment(corpus):
    _, matches = Searcher(corpus["cfg"]).search_file(str(corpus["q"]["unrelated"]))
    assert [s for m in matches for s in m.segments] == []


def test_cli_segments_csv(corpus, capsys):
    cfg = corpus["cfg"]
    assert cli_main(["--data-dir", cfg.data_dir, "search", str(corpus["q"]["b_partial"]), "--segments", "--csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("query,query_segment,source_id")
    assert len(lines) == 2 and "b.mp4" in lines[1]


def test_reindexing_the_same_files_adds_nothing(corpus):
    cfg = corpus["cfg"]
    before = Catalog(cfg).vectors.count()
    rep = index([str(corpus["lib"])], cfg)
    assert rep.indexed == 0 and rep.skipped == 3
    assert Catalog(cfg).vectors.count() == before
    assert before["frames"] > 0 and before["audio"] > 0
    assert before["phash"] == 0  # vectors.phash: auto keeps the codes out of Milvus Lite (shards have them)


def test_cli_search_json(corpus, capsys, monkeypatch):
    cfg = corpus["cfg"]
    assert cli_main(["--data-dir", cfg.data_dir, "search", str(corpus["q"]["a_reencode"]), "--json",
                     "--top", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["matches"][0]["source_uri"].endswith("a.mp4")
    assert set(out["matches"][0]["scores"]) == {"visual", "audio", "metadata"}


def test_delete_then_reindex(corpus):
    cfg = corpus["cfg"]
    cat = Catalog(cfg)
    before = cat.vectors.count()
    _, m = _top(cfg, corpus["q"]["a_reencode"])
    removed = cat.delete(m.source_id)
    assert removed and removed > 0
    after = cat.vectors.count()
    assert sum(after.values()) == sum(before.values()) - removed
    assert m.source_id not in cat.vectors.video_ids()
    _, matches = Searcher(cfg, cat).search_file(str(corpus["q"]["a_reencode"]))
    assert all(x.source_id != m.source_id for x in matches)
    assert cat.delete(m.source_id) is None  # already gone: said, not an error
    assert cat.reindex() == 2
    assert cat.vectors.count() == after
