"""The backfill job: arguments, pool placement, and resume after the driver is SIGKILLed mid-write."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from astradup.catalog import Catalog
from astradup.config import load_config
from astradup.features.placement import plan_embedder
from astradup.pipeline import done_listing
from jobs.backfill import config_from_args, main, parse_args
from tests.media import SOURCES, make_video

ROOT = Path(__file__).resolve().parents[2]

# The driver, with Catalog.write wrapped so that on its KILL_AT-th call it writes the batch's
# vectors to Milvus and then SIGKILLs itself before the shard (the "done" record) is written:
# the worst moment to die, since Milvus then holds vectors that the status rows do not know of.
KILLED_DRIVER = """
import os, signal, sys
from astradup.catalog import Catalog
write, calls = Catalog.write, [0]
def dying_write(self, batch):
    calls[0] += 1
    if calls[0] == int(os.environ["KILL_AT"]):
        self.vectors.upsert_many(batch)
        os.kill(os.getpid(), signal.SIGKILL)
    write(self, batch)
Catalog.write = dying_write
from jobs.backfill import main
sys.exit(main(sys.argv[1:]))
"""


def test_args_make_local_paths_absolute_and_keep_remote_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config_from_args(parse_args(["--source", "x", "--shards", "rel/shards", "--milvus-uri", "m.db",
                                       "--write-batch", "7", "--embed-gpus", "0.5"]))
    assert cfg.shards_dir == str(tmp_path / "rel/shards") and cfg.milvus_uri == str(tmp_path / "m.db")
    assert cfg.pipeline.write_batch == 7 and cfg.pipeline.embed_num_gpus == 0.5
    assert cfg.pipeline.decode_concurrency == 0  # the job sizes decoding to the cluster by default
    cfg = config_from_args(parse_args(["--source", "x", "--shards", "s3://b/f", "--milvus-uri",
                                       "http://h:19530"]))
    assert cfg.shards_dir == "s3://b/f" and cfg.milvus_uri == "http://h:19530"
    assert cfg.pipeline.write_batch == load_config().pipeline.write_batch == 100
    with pytest.raises(SystemExit):
        config_from_args(parse_args(["--source", "x", "--write-batch", "0"]))


def test_embedder_goes_to_gpus_when_the_cluster_has_them():
    cfg = load_config(overrides={"pipeline": {"embed_concurrency": 2}})
    cpu = plan_embedder(cfg, {"CPU": 16.0})
    assert (cpu.device, cpu.num_gpus, cpu.num_cpus, cpu.min_size, cpu.max_size) == ("cpu", 0.0, 1.0, 2, 2)
    gpu = plan_embedder(cfg, {"CPU": 64.0, "GPU": 4.0})
    assert (gpu.device, gpu.num_gpus, gpu.num_cpus, gpu.min_size, gpu.max_size) == ("gpu", 1.0, 0.0, 2, 4)
    cfg.pipeline.embed_num_gpus = 0.5  # two actors share a GPU
    assert plan_embedder(cfg, {"GPU": 4.0}).max_size == 8
    cfg.pipeline.embed_num_gpus = 2.0  # more than the cluster has: capped, not left pending
    assert (plan_embedder(cfg, {"GPU": 1.0}).num_gpus, plan_embedder(cfg, {"GPU": 1.0}).max_size) == (1.0, 1)
    cfg.embedder.device = "cpu"  # pinned to the CPU: GPUs are ignored
    assert plan_embedder(cfg, {"GPU": 4.0}).device == "cpu"


def test_done_listing_skips_only_ok_rows_with_uri_and_size():
    ids, refs = done_listing({
        "a": {"status": "ok", "uri": "s3://b/a.mp4", "size": 10},
        "b": {"status": "failed", "uri": "s3://b/b.mp4", "size": 11},
        "c": {"status": "deleted", "uri": "", "size": None},
        "d": {"status": "ok", "uri": "", "size": None},
    })
    assert ids == {"a", "d"} and refs == {("s3://b/a.mp4", 10)}


def test_driver_killed_mid_write_then_rerun_indexes_each_video_once(tmp_path, monkeypatch, ray_head):
    n, batch = 6, 2
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(n):
        make_video(videos / f"v{i}.mp4", seconds=3, size=(160, 120), source=SOURCES[i], audio="sine", seed=i)
    args = ["--source", str(videos), "--data-dir", str(tmp_path / "data"), "--write-batch", str(batch),
            "--decode-concurrency", "1"]
    # The driver joins a running cluster, as a `ray job submit` driver does; killing it mid-job is the
    # case that matters (its actors die with it, the cluster lives on).
    env = dict(os.environ, RAY_ADDRESS=ray_head, KILL_AT="2", ASTRADUP_PIPELINE__DASHBOARD="false",
               PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_DRIVER, *args], cwd=ROOT, env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=480)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == -signal.SIGKILL, out[-3000:]

    cfg = config_from_args(parse_args(args))
    cat = Catalog(cfg)
    done = {v for v, r in cat.shards.latest_status().items() if r["status"] == "ok"}
    assert len(done) == batch  # the first batch is recorded; the second only reached Milvus
    assert len(cat.vectors.video_ids()) == 2 * batch
    cat.vectors.close()

    monkeypatch.setenv("ASTRADUP_PIPELINE__DASHBOARD", "false")
    summary_path = tmp_path / "summary.json"
    assert main([*args, "--summary-json", str(summary_path)]) == 0
    summary = json.loads(summary_path.read_text())
    assert summary["indexed"] == n - batch and summary["skipped"] == summary["skipped_unread"] == batch
    assert not summary["failed"]

    cat = Catalog(cfg)
    status = cat.shards.latest_status()
    ok = {v for v, r in status.items() if r["status"] == "ok"}
    assert len(ok) == len(status) == n and done <= ok
    feats = cat.shards.load_features(ok)
    assert cat.vectors.video_ids() == ok
    assert summary["vectors"]["frames"] == sum(cat.vectors.stored_rows(f)["frames"] for f in feats.values())
    for vid in ok:  # the re-done batch replaced its orphaned vectors instead of adding to them
        t, _ = cat.vectors.get_frames(vid)
        assert len(t) == len(np.unique(t)) == cat.vectors.stored_rows(feats[vid])["frames"] > 0
    cat.vectors.close()


def test_a_damaged_shard_is_quarantined_and_the_next_backfill_indexes_its_videos_again(tmp_path):
    """A truncated features shard costs its videos (quarantined, the rest still searchable); the
    next index run over the same sources writes them again, though their status says ok."""
    from astradup.pipeline import index
    from astradup.search import Searcher

    videos = tmp_path / "videos"
    videos.mkdir()
    for i, src in enumerate(SOURCES[:2]):
        make_video(videos / f"v{i}.mp4", seconds=4, source=src, seed=i)
    cfg = load_config(overrides={"data_dir": str(tmp_path / "data"),
                                 "pipeline": {"dashboard": False, "decode_concurrency": 1}})
    cat = Catalog(cfg)
    first = index([str(videos)], cfg, catalog=cat)
    cat.vectors.close()  # one Milvus Lite client per file
    assert first.indexed == 2
    ids = sorted(cat.shards.latest_status())
    shard = sorted((tmp_path / "data" / "shards" / "features").rglob("*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    fresh = Catalog(cfg)
    try:
        lost = fresh.shards.lost_ids()
        assert lost and fresh.shards.stats()["shards_quarantined"] == 1
        assert not set(fresh.shards.load_features(lost))
        Searcher(cfg, fresh).search_file(str(videos / "v0.mp4"))  # still answers
        again = index([str(videos)], cfg, catalog=fresh)
        assert again.indexed == len(lost)
        assert set(Catalog(cfg).shards.load_features(ids)) == set(ids)
        assert shard.exists()  # left for the operator
    finally:
        fresh.vectors.close()
