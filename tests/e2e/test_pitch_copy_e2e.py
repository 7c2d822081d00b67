"""A pitch-shifted soundtrack under another picture, end to end: indexed through the real pipeline
(Parquet shards, Milvus Lite), the query's pitch variants (features/pitch_variants.py) find its
source and the copied stretch; without them (``audio.query_pitch: []``) nothing is found, and other
music is never matched."""
from __future__ import annotations

from pathlib import Path

import pytest

from astradup.catalog import Catalog
from astradup.config import load_config
from astradup.pipeline import index
from astradup.search import Searcher
from tests.media import make_video, run_ffmpeg

SECONDS = 14
SHIFT = 1.12  # pitch x1.12 (about +2 semitones), tempo kept: the hard benchmark's edit


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("pitch_copy")
    lib = root / "library"
    lib.mkdir()
    make_video(lib / "song.mp4", seconds=SECONDS, size=(320, 240), source="mandelbrot", audio="music", seed=5)
    make_video(lib / "other.mp4", seconds=SECONDS, size=(320, 240), source="gradients", audio="music", seed=9)
    picture = make_video(root / "picture.mp4", seconds=SECONDS, size=(320, 240), source="life", audio=None)
    query = root / "query.mp4"
    run_ffmpeg("-i", str(picture), "-i", str(lib / "song.mp4"), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
               "-af", f"aresample=44100,asetrate={int(44100 * SHIFT)},aresample=44100,atempo={1 / SHIFT:.6f}",
               "-c:a", "aac", "-b:a", "96k", str(query))
    cfg = load_config(overrides={"data_dir": str(root / "data"),
                                 "pipeline": {"dashboard": False, "decode_concurrency": 1}})
    rep = index([str(lib)], cfg, catalog=Catalog(cfg))
    assert rep.indexed == 2 and not rep.failed, rep.summary()
    return {"cfg": cfg, "query": query}


def _ids(cfg) -> dict[str, str]:
    return {Path(f.uri).name: f.video_id for b in Catalog(cfg).shards.iter_features() for f in b}


def test_the_pitch_shifted_soundtrack_is_found_with_its_interval(corpus):
    cfg = corpus["cfg"]
    ids = _ids(cfg)
    searcher = Searcher(cfg)
    q = searcher.query_from_file(str(corpus["query"]))
    assert q.pitch is not None and q.pitch.shape[:2] == (len(cfg.audio.query_pitch), len(q.features.audio_windows))
    matches = searcher.search(q, top=10)
    by_id = {m.source_id: m for m in matches}
    song = by_id.get(ids["song.mp4"])
    assert song is not None and song.segments, matches
    seg = max(song.segments, key=lambda s: s.q_end - s.q_start)
    assert seg.q_end - seg.q_start >= SECONDS / 2, seg
    assert abs(seg.s_start - seg.q_start) <= 2.0, seg  # the same stretch of the song, not shifted
    other = by_id.get(ids["other.mp4"])
    assert other is None or not other.segments, other


def test_without_the_variants_the_copy_is_missed(corpus):
    cfg = load_config(overrides={"data_dir": corpus["cfg"].data_dir, "audio": {"query_pitch": []},
                                 "pipeline": {"dashboard": False}})
    searcher = Searcher(cfg)
    q = searcher.query_from_file(str(corpus["query"]))
    assert q.pitch is None
    song = _ids(cfg)["song.mp4"]
    assert not [s for m in searcher.search(q, top=10) if m.source_id == song for s in m.segments]
