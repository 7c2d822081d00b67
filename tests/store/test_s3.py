"""The backfill job over S3 (a local moto server): videos read from s3://, shards written to s3://,
vectors in a Milvus Lite file; a re-run adds nothing, by listing alone or by content hash."""
from __future__ import annotations

import json

import numpy as np
import pytest

from astradup.catalog import Catalog
from astradup.io.sources import list_videos
from jobs.backfill import config_from_args, main, parse_args
from tests.media import SOURCES, make_broken, make_video

N_GOOD = 5


@pytest.fixture()
def s3_corpus(s3_bucket, tmp_path):
    fs, bucket = s3_bucket
    local = tmp_path / "videos"
    local.mkdir()
    for i in range(N_GOOD):
        make_video(local / f"v{i}.mp4", seconds=3, size=(160, 120), source=SOURCES[i], audio="sine", seed=i)
    make_broken("not_video", local / "junk.mp4")
    (local / "notes.txt").write_text("not listed: no video extension")
    fs.put(str(local) + "/", f"{bucket}/videos/", recursive=True)
    return fs, bucket


def _run(tmp_path, endpoint, bucket, *extra):
    out = tmp_path / f"summary{len(list(tmp_path.glob('summary*.json')))}.json"
    argv = ["--source", f"s3://{bucket}/videos", "--shards", f"s3://{bucket}/features",
            "--milvus-uri", str(tmp_path / "milvus.db"), "--s3-endpoint", endpoint,
            "--write-batch", "2", "--decode-concurrency", "1", "--summary-json", str(out), *extra]
    assert main(argv) == 0
    return json.loads(out.read_text()), config_from_args(parse_args(argv))


def test_listing_takes_sizes_from_the_listing(s3_corpus, s3_endpoint):
    fs, bucket = s3_corpus
    got = list_videos([f"s3://{bucket}/videos"], s3_endpoint)
    assert [u.rsplit("/", 1)[-1] for u, _ in got] == ["junk.mp4", *(f"v{i}.mp4" for i in range(N_GOOD))]
    assert all(size == fs.size(u) for u, size in got)


def test_s3_backfill_then_rerun_adds_nothing(s3_corpus, s3_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("ASTRADUP_PIPELINE__DASHBOARD", "false")
    fs, bucket = s3_corpus
    first, cfg = _run(tmp_path, s3_endpoint, bucket)
    assert first["listed"] == N_GOOD + 1 and first["indexed"] == N_GOOD and first["skipped"] == 0
    assert [f["uri"] for f in first["failed"]] == [f"s3://{bucket}/videos/junk.mp4"]
    assert "not a media file" in first["failed"][0]["reason"]
    assert first["media_hours"] == pytest.approx(N_GOOD * 3 / 3600, rel=0.05)

    # The shards really are on S3, and every ok row's vectors are in Milvus exactly once.
    assert fs.ls(f"{bucket}/features/features") and fs.ls(f"{bucket}/features/status")
    cat = Catalog(cfg)
    status = cat.shards.latest_status()
    ok = {v for v, r in status.items() if r["status"] == "ok"}
    assert len(ok) == N_GOOD and sum(r["status"] == "failed" for r in status.values()) == 1
    feats = cat.shards.load_features(ok)
    n_frames = sum(cat.vectors.stored_rows(f)["frames"] for f in feats.values())
    assert first["vectors"]["frames"] == n_frames > 0
    assert first["vectors"]["phash"] == sum(cat.vectors.stored_rows(f)["phash"] for f in feats.values())
    assert cat.vectors.video_ids() == ok
    for vid in ok:  # no frame twice
        t, _ = cat.vectors.get_frames(vid)
        assert len(np.unique(t)) == len(t) == cat.vectors.stored_rows(feats[vid])["frames"]
    cat.vectors.close()

    again, _ = _run(tmp_path, s3_endpoint, bucket)
    assert again["indexed"] == 0 and again["skipped"] == again["skipped_unread"] == N_GOOD
    assert len(again["failed"]) == 1  # a failure is retried (it may have been transient) and recorded
    assert again["vectors"] == first["vectors"]

    # --rehash reads every object back from S3 and still finds nothing new, by content hash.
    hashed, _ = _run(tmp_path, s3_endpoint, bucket, "--rehash")
    assert hashed["indexed"] == 0 and hashed["skipped"] == N_GOOD and hashed["skipped_unread"] == 0
    assert hashed["vectors"] == first["vectors"]
