"""Soundtrack reuse end to end: a video whose whole soundtrack is another's under a different
picture, indexed through the real pipeline (Parquet shards, Milvus Lite), is found by search, by
the dedup job and in the report with its "audio copy" flag and interval, still labelled none; a
video with other music is not flagged."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from astradup.catalog import Catalog
from astradup.cli import main as cli_main
from astradup.config import load_config
from astradup.dedup.job import live_ids, run_job
from astradup.dedup.results import dedup_groups
from astradup.pipeline import index
from astradup.records import AudioCopy
from astradup.report.write import write_report
from astradup.search import Searcher
from tests.media import make_video

SECONDS = 12


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """song (mandelbrot + music 5), reuse (life + the same music 5), other (gradients + music 9)."""
    root = tmp_path_factory.mktemp("audio_copy")
    lib = root / "library"
    lib.mkdir()
    # make_video's "music" is synthesised from the seed alone: the same seed is the same soundtrack
    make_video(lib / "song.mp4", seconds=SECONDS, size=(320, 240), source="mandelbrot", audio="music", seed=5)
    make_video(lib / "reuse.mp4", seconds=SECONDS, size=(320, 240), source="life", audio="music", seed=5)
    make_video(lib / "other.mp4", seconds=SECONDS, size=(320, 240), source="gradients", audio="music", seed=9)
    cfg = load_config(overrides={"data_dir": str(root / "data"),
                                 "pipeline": {"dashboard": False, "decode_concurrency": 1}})
    catalog = Catalog(cfg)
    rep = index([str(lib)], cfg, catalog=catalog)
    assert rep.indexed == 3 and not rep.failed, rep.summary()
    catalog.close_vectors()  # the dedup job's worker opens the Lite file next
    ids = {Path(u).name: v for v, u in live_ids(Catalog(cfg).shards).items()}
    run_job(cfg, batch_size=3)
    return {"cfg": cfg, "root": root, "lib": lib, "ids": ids}


def _assert_whole_interval(a: AudioCopy) -> None:
    assert a.q_start <= 1.5 and a.q_end >= SECONDS - 1.5, a
    assert a.s_start <= 1.5 and a.s_end >= SECONDS - 1.5, a
    assert abs((a.s_start - a.q_start)) <= 1.5, a  # the soundtrack is not shifted


def test_search_flags_the_copied_soundtrack_and_keeps_the_label(corpus):
    cfg, ids, lib = corpus["cfg"], corpus["ids"], corpus["lib"]
    _, matches = Searcher(cfg).search_file(str(lib / "reuse.mp4"), top=10)
    by_id = {m.source_id: m for m in matches}
    m = by_id[ids["song.mp4"]]
    assert m.audio_copy is not None, m
    assert m.label == "none" and m.fused < cfg.fusion.similar, m  # fusion decides the label, not the flag
    assert m.scores["audio"] >= cfg.audio_copy.min_audio and m.scores["visual"] < cfg.audio_copy.max_visual
    _assert_whole_interval(m.audio_copy)
    assert any(n.startswith("audio copy q ") for n in m.notes), m.notes
    other = by_id.get(ids["other.mp4"])
    assert other is None or (other.audio_copy is None and not any("audio copy" in n for n in other.notes))


def test_search_without_none_labels_still_lists_it(corpus):
    cfg, ids = corpus["cfg"], corpus["ids"]
    matches = Searcher(cfg).search_indexed(ids["song.mp4"])  # include_none=False
    flagged = [m for m in matches if m.audio_copy is not None]
    assert [m.source_id for m in flagged] == [ids["reuse.mp4"]], matches
    assert flagged[0].label == "none"
    _assert_whole_interval(flagged[0].audio_copy)
    assert all(m.source_id != ids["other.mp4"] or m.audio_copy is None for m in matches)


def test_cli_search_json_carries_the_flag(corpus, capsys):
    cfg = corpus["cfg"]
    assert cli_main(["--data-dir", cfg.data_dir, "search", str(corpus["lib"] / "reuse.mp4"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    flagged = [m for m in out["matches"] if m["audio_copy"]]
    assert [m["source_uri"].rsplit("/", 1)[-1] for m in flagged] == ["song.mp4"]
    assert flagged[0]["label"] == "none" and flagged[0]["audio_copy"]["q_end"] >= SECONDS - 1.5


def test_dedup_lists_the_audio_copy_not_as_a_group(corpus, capsys):
    cfg, ids = corpus["cfg"], corpus["ids"]
    groups, best, _, partial = dedup_groups(cfg, "near-duplicate", run=False)
    assert groups == [] and best == {}
    copies = [(q, sg) for q, sg in partial if isinstance(sg, AudioCopy)]
    assert len(copies) == 1, partial
    q, a = copies[0]
    assert {q, a.source_id} == {ids["song.mp4"], ids["reuse.mp4"]}
    _assert_whole_interval(a)
    assert cli_main(["--data-dir", cfg.data_dir, "dedup", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    flagged = [p for p in out["partial_copies"] if p["audio_copy"]]
    assert len(flagged) == 1 and {flagged[0]["video_id"], flagged[0]["source_id"]} == {ids["song.mp4"],
                                                                                        ids["reuse.mp4"]}
    assert cli_main(["--data-dir", cfg.data_dir, "dedup"]) == 0
    assert "audio copy: " in capsys.readouterr().out


def test_report_shows_the_audio_copy(corpus, tmp_path):
    summary = write_report(corpus["cfg"], tmp_path / "r", thumbs_per_video=0)
    assert summary["audio_copies"] == 1 and summary["groups"] == 0
    page = (tmp_path / "r" / "report.html").read_text()
    assert page.count('class="badge audio-copy"') == 1 and "reuse.mp4" in page and "song.mp4" in page
    assert "other.mp4" not in page
