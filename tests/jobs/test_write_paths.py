"""pipeline.writers: the driver writes every batch (Milvus Lite's single writer), or writer actors at
the end of the Ray Data graph do (a Milvus server) and the driver only counts their summaries.

Against a Milvus server (tests/milvus_harness.py): both paths index the same videos into the same
rows and the same shard contents; in the workers path the driver process writes nothing; a writer
killed between its vector upsert and its shard still leaves each video indexed once.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

import astradup.write_stage as write_stage
from astradup.catalog import Catalog
from astradup.config import load_config, resolved_writers
from astradup.errors import ConfigError
from astradup.decode_stage import batch_rows
from astradup.pipeline import index
from astradup.store.shards import ShardStore
from astradup.store.vectors import VectorStore
from astradup.write_stage import WriteStage, new_rows
from tests.media import SOURCES, make_video
from tests.milvus_harness import milvus_server

N_VIDEOS = 5


def test_writers_setting_is_validated_and_resolved(tmp_path):
    lite = {"data_dir": str(tmp_path)}
    server = {**lite, "milvus_uri": "http://127.0.0.1:19530"}
    assert resolved_writers(load_config(overrides=lite)) == "driver"
    assert resolved_writers(load_config(overrides=server)) == "workers"
    assert resolved_writers(load_config(overrides={**server, "pipeline": {"writers": "driver"}})) == "driver"
    with pytest.raises(ConfigError, match="pipeline.writers"):
        load_config(overrides={**lite, "pipeline": {"writers": "workers"}})
    with pytest.raises(ConfigError, match="pipeline.writers"):
        load_config(overrides={**server, "pipeline": {"writers": "sometimes"}})
    with pytest.raises(ConfigError, match="pipeline.write_concurrency"):
        load_config(overrides={**server, "pipeline": {"write_concurrency": 0}})
    # A config changed after loading (jobs/backfill sets milvus_uri from its arguments) is checked again.
    cfg = load_config(overrides={**server, "pipeline": {"writers": "workers"}})
    cfg.milvus_uri = str(tmp_path / "m.db")
    with pytest.raises(ConfigError, match="pipeline.writers"):
        index([str(tmp_path)], cfg)


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory):
    for server in milvus_server(tmp_path_factory):
        yield server.uri


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("write_paths_videos")
    for i in range(N_VIDEOS):
        make_video(d / f"v{i}.mp4", seconds=3, size=(160, 120), source=SOURCES[i], audio="sine", seed=i)
    (d / "broken.mp4").write_bytes(b"not a video at all")  # a failure record goes through both paths
    return d


def _cfg(root: Path, uri: str, name: str, writers: str):
    return load_config(overrides={
        "data_dir": str(root / name), "milvus_uri": uri, "collection_prefix": f"wp_{name}",
        "search": {"consistency": "Strong"},  # the test's client reads what other clients wrote
        "pipeline": {"dashboard": False, "decode_concurrency": 1, "write_batch": 2, "writers": writers}})


@pytest.fixture(scope="module")
def both(milvus_uri, videos, tmp_path_factory):
    root = tmp_path_factory.mktemp("write_paths")
    driver_cfg = _cfg(root, milvus_uri, "driver", "driver")
    workers_cfg = _cfg(root, milvus_uri, "workers", "auto")  # auto on a server = workers
    assert resolved_writers(workers_cfg) == "workers"
    driver_report = index([str(videos)], driver_cfg)

    # Spy on the driver process: in the workers path nothing here may write a shard or a vector.
    calls: list[str] = []
    mp = pytest.MonkeyPatch()
    for cls, name in ((ShardStore, "write_features"), (ShardStore, "write_status"), (VectorStore, "upsert_many")):
        real = getattr(cls, name)

        def spy(self, *a, _real=real, _name=name, **kw):
            calls.append(_name)
            return _real(self, *a, **kw)
        mp.setattr(cls, name, spy)
    try:
        workers_report = index([str(videos)], workers_cfg)
    finally:
        mp.undo()
    return {"driver": (driver_cfg, driver_report), "workers": (workers_cfg, workers_report), "calls": calls}


def test_workers_path_writes_what_the_driver_path_writes(both):
    (dcfg, drep), (wcfg, wrep) = both["driver"], both["workers"]
    assert drep.indexed == wrep.indexed == N_VIDEOS and len(drep.failed) == len(wrep.failed) == 1
    assert sorted(drep.video_ids) == sorted(wrep.video_ids)
    assert drep.media_seconds == pytest.approx(wrep.media_seconds)
    assert (drep.writers, wrep.writers) == ("driver", "workers")
    assert drep.write_seconds > 0 and wrep.write_seconds > 0
    assert wrep.to_dict()["writers"] == "workers" and "written by the workers" in wrep.summary()
    dcat, wcat = Catalog(dcfg), Catalog(wcfg)
    ids = set(drep.video_ids)
    assert dcat.vectors.video_ids() == wcat.vectors.video_ids() == ids
    assert dcat.vectors.count() == wcat.vectors.count()
    for vid in ids:
        assert dcat.vectors.count(vid) == wcat.vectors.count(vid)
    # Status rows: the same videos, uris, statuses and errors.
    key = lambda st: {v: (r["uri"], r["status"], r["error"], r["size"]) for v, r in st.items()}  # noqa: E731
    assert key(dcat.shards.latest_status()) == key(wcat.shards.latest_status())
    # Shard contents: every feature array alike.
    dfe, wfe = dcat.shards.load_features(ids), wcat.shards.load_features(ids)
    for vid in ids:
        a, b = dfe[vid], wfe[vid]
        for name in ("timestamps", "embeddings", "phash", "audio_windows", "audio_vectors", "chromaprint"):
            np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)), err_msg=name)
        assert a.uri == b.uri and a.meta.get("duration") == b.meta.get("duration")
    # A search: each video's frames find the same videos at the same similarities.
    step = dcat.vectors.projection.frame_stride  # frames the index holds (vectors.frame_stride)
    frames = np.concatenate([dfe[v].embeddings[::step][:2] for v in sorted(ids)])
    for d_row, w_row in zip(dcat.vectors.search_frames(frames, 3), wcat.vectors.search_frames(frames, 3)):
        assert [round(x[2], 4) for x in d_row] == [round(x[2], 4) for x in w_row]
        assert d_row[0][0] == w_row[0][0] and d_row[0][2] == pytest.approx(1.0, abs=1e-3)
    dcat.vectors.close()
    wcat.vectors.close()


def test_the_driver_writes_nothing_in_the_workers_path(both):
    assert both["calls"] == []
    wcfg, _ = both["workers"]  # while the shards and vectors were written all the same
    assert len(Catalog(wcfg).shards.latest_status()) == N_VIDEOS + 1


class DyingWriteStage(WriteStage):
    """A writer that, once (a marker file says when it has), upserts its batch's vectors and then
    SIGKILLs its own process before the shard is written: the worst moment for a writer to die."""

    def __call__(self, batch):
        marker = Path(self.cfg.data_dir) / "writer-killed"  # a Ray worker sees the config, not the test
        if any(s == "ok" for s in batch["status"]) and not marker.exists():
            marker.write_text(str(os.getpid()))
            feats = [f for _, f in new_rows(list(batch_rows(batch)), set()) if f is not None]
            self._catalog(feats).vectors.upsert_many([f for f in feats if f.status == "ok"])
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(batch)


def test_writer_killed_mid_write_then_rerun_indexes_each_video_once(milvus_uri, videos, tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, milvus_uri, "killed", "workers")
    marker = Path(cfg.data_dir) / "writer-killed"
    monkeypatch.setattr(write_stage, "WriteStage", DyingWriteStage)
    # pytest imports this file under a name a Ray worker cannot import: the class travels by value.
    import sys

    from ray import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:  # Ray restarts the writer and retries its batch (Ray 2.60 does): then this run ends well,
        first = index([str(videos)], cfg)  # and counts each video once
        assert first.indexed == N_VIDEOS and len(set(first.video_ids)) == N_VIDEOS
    except AssertionError:
        raise
    except Exception:  # or the job fails: the re-run below must finish it
        pass
    assert marker.exists(), "the writer was never killed"
    monkeypatch.setattr(write_stage, "WriteStage", WriteStage)
    again = index([str(videos)], cfg)
    cat = Catalog(cfg)
    status = cat.shards.latest_status()
    ok = {v for v, r in status.items() if r["status"] == "ok"}
    assert len(ok) == N_VIDEOS and again.indexed + again.skipped + len(again.failed) == N_VIDEOS + 1
    feats = cat.shards.load_features(ok)
    assert cat.vectors.video_ids() == ok
    for vid in ok:  # the re-done batch replaced the orphaned vectors instead of adding to them
        t, _ = cat.vectors.get_frames(vid)
        assert len(t) == len(np.unique(t)) == cat.vectors.stored_rows(feats[vid])["frames"] > 0
    cat.vectors.close()
