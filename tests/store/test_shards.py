"""ShardStore: every field round-trips, latest-status rules, tombstones, crash safety."""
from __future__ import annotations

import os
import re
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow.parquet as pq
import pytest

from astradup.records import STATUS_DELETED, STATUS_FAILED, STATUS_OK, VideoFeatures
from astradup.store.shard_schema import FEATURES_SCHEMA, STATUS_SCHEMA
from astradup.store.shards import ShardStore


def make_features(vid: str, seed: int = 0, t: int = 7, d: int = 16, w: int = 4, da: int = 8) -> VideoFeatures:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(t, d)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    av = rng.normal(size=(w, da)).astype(np.float32)
    av /= np.linalg.norm(av, axis=1, keepdims=True)
    starts = np.arange(w, dtype=np.float32)
    return VideoFeatures(
        video_id=vid, uri=f"/videos/{vid}.mp4",
        timestamps=np.arange(t, dtype=np.float32) + 0.5,
        embeddings=emb,
        phash=rng.integers(0, 256, size=(t, 32), dtype=np.uint8),
        audio_windows=np.stack([starts, starts + 5.0], axis=1),
        audio_vectors=av,
        chromaprint=rng.integers(0, 2**32, size=(50,), dtype=np.uint64).astype(np.uint32),
        chromaprint_hz=7.8125,
        meta={"duration": 7.25, "fps": 25, "width": 320, "height": 240, "vcodec": "h264",
              "acodec": "aac", "container": "mov,mp4,m4a,3gp,3g2,mj2", "size": 123456,
              "rotation": np.int64(90), "tags": {"title": "x"}, "bitrate": np.float32(1.5)},
    )


def assert_same(a: VideoFeatures, b: VideoFeatures) -> None:
    assert (a.video_id, a.uri, a.status, a.error) == (b.video_id, b.uri, b.status, b.error)
    for name, dtype in [("timestamps", np.float32), ("embeddings", np.float32), ("phash", np.uint8),
                        ("audio_windows", np.float32), ("audio_vectors", np.float32),
                        ("chromaprint", np.uint32)]:
        x, y = getattr(a, name), getattr(b, name)
        assert y.dtype == dtype, name
        assert x.shape == y.shape, name
        if name == "embeddings":  # stored as int8 per row (store/compact.py): directions survive
            np.testing.assert_allclose(x, y, atol=0.01, err_msg=name)
            if len(x):
                assert np.einsum("ij,ij->i", x, y).min() > 0.999
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.chromaprint_hz == b.chromaprint_hz


def test_round_trip_every_field(tmp_path):
    store = ShardStore(str(tmp_path))
    f = make_features("vid-a")
    path = store.write_features([f])
    assert re.fullmatch(r"part-\d{8}T\d{12}Z-[0-9a-f]{8}\.parquet", os.path.basename(path))
    assert os.path.dirname(path) == str(tmp_path / "features")
    assert pq.read_schema(path).remove_metadata().equals(FEATURES_SCHEMA)

    got = store.load_features(["vid-a", "nope"])
    assert set(got) == {"vid-a"}
    g = got["vid-a"]
    assert_same(f, g)
    assert g.embeddings.flags.writeable  # callers may normalise in place
    # Promoted keys come back from their columns (fps int -> the float column), the rest from JSON.
    assert g.meta == {"duration": 7.25, "fps": 25.0, "width": 320, "height": 240, "vcodec": "h264",
                      "acodec": "aac", "container": "mov,mp4,m4a,3gp,3g2,mj2", "size": 123456,
                      "rotation": 90, "tags": {"title": "x"}, "bitrate": 1.5}
    row = pq.read_table(path).to_pylist()[0]
    assert row["fps"] == 25.0 and row["width"] == 320 and row["emb_dim"] == 16 and row["audio_dim"] == 8
    assert len(row["emb_q"]) == 7 * 16 and len(row["phash"]) == 7 * 32 and row["embeddings"] is None
    # Random audio vectors are not what Chromaprint + MFCC make: kept whole, not rebuilt.
    assert len(row["audio_vectors"]) == 4 * 8 and row["audio_mfcc"] is None

    st = store.latest_status()["vid-a"]
    assert st["status"] == STATUS_OK and st["size"] == 123456 and st["duration"] == 7.25
    assert st["at"].tzinfo is not None


def test_meta_value_that_does_not_fit_its_column_stays_in_json(tmp_path):
    store = ShardStore(str(tmp_path))
    f = make_features("vid-m")
    f.meta = {"fps": "30000/1001", "width": 2.5, "duration": True}
    path = store.write_features([f])
    row = pq.read_table(path).to_pylist()[0]
    assert row["fps"] is None and row["width"] is None and row["duration"] is None
    assert store.load_features(["vid-m"])["vid-m"].meta == f.meta


def test_failed_record_round_trips_with_empty_arrays(tmp_path):
    store = ShardStore(str(tmp_path))
    bad = VideoFeatures.failed("vid-bad", "/videos/bad.mp4", "moov atom not found", meta={"size": 0}, dim=16)
    path = store.write_features([bad, make_features("vid-ok")])
    rows = {f.video_id: f for f in store.read_shard(path)}
    g = rows["vid-bad"]
    assert_same(bad, g)
    assert g.embeddings.shape == (0, 16) and g.phash.shape == (0, 32)
    assert g.audio_windows.shape == (0, 2) and g.audio_vectors.shape == (0, 0)
    assert g.status == STATUS_FAILED and g.error == "moov atom not found" and g.meta == {"size": 0}
    assert_same(make_features("vid-ok"), rows["vid-ok"])

    st = store.latest_status()
    assert st["vid-bad"]["status"] == STATUS_FAILED and st["vid-bad"]["error"] == "moov atom not found"
    assert set(store.load_features(["vid-bad", "vid-ok"])) == {"vid-ok"}
    s = store.stats()
    assert (s["videos_ok"], s["videos_failed"], s["videos_live"], s["shards"]) == (1, 1, 1, 1)


def test_latest_status_by_time_then_later_file(tmp_path):
    store = ShardStore(str(tmp_path))
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    # The later event is written first: time decides, not write order.
    store.write_status([{"video_id": "a", "status": STATUS_FAILED, "error": "late", "at": t0 + timedelta(hours=1)}])
    store.write_status([{"video_id": "a", "status": STATUS_OK, "at": t0}])
    # Same time: the later file wins.
    store.write_status([{"video_id": "b", "status": STATUS_OK, "at": t0}])
    store.write_status([{"video_id": "b", "status": STATUS_FAILED, "error": "second", "at": t0}])
    st = store.latest_status()
    assert st["a"]["status"] == STATUS_FAILED and st["a"]["error"] == "late"
    assert st["a"]["at"] == t0 + timedelta(hours=1)
    assert st["b"]["error"] == "second"
    with pytest.raises(ValueError, match="status must be one of"):
        store.write_status([{"video_id": "c", "status": "weird"}])


def test_reindex_returns_newest_and_deleted_is_hidden(tmp_path):
    store = ShardStore(str(tmp_path))
    store.write_features([make_features("v1", seed=1), make_features("v2", seed=2)])
    newer = make_features("v1", seed=9, t=3)
    store.write_features([newer])
    assert_same(newer, store.load_features(["v1"])["v1"])

    store.mark_deleted("v1")
    assert set(store.load_features(["v1", "v2"])) == {"v2"}
    assert [f.video_id for b in store.iter_features() for f in b] == ["v2"]
    s = store.stats()
    assert (s["videos_ok"], s["videos_deleted"], s["videos_live"], s["shards"]) == (1, 1, 1, 2)
    assert store.latest_status()["v1"]["status"] == STATUS_DELETED

    # A later re-index brings it back (the tombstone only covers older features).
    again = make_features("v1", seed=5)
    store.write_features([again])
    assert_same(again, store.load_features(["v1"])["v1"])


def test_index_refreshes_when_another_writer_adds_shards(tmp_path):
    reader = ShardStore(str(tmp_path))
    assert reader.load_features(["x"]) == {}
    ShardStore(str(tmp_path)).write_features([make_features("x", seed=3)])
    assert_same(make_features("x", seed=3), reader.load_features(["x"])["x"])
    ShardStore(str(tmp_path)).mark_deleted("x")
    assert reader.load_features(["x"]) == {}


def test_iter_features_batches_all_live_videos(tmp_path):
    store = ShardStore(str(tmp_path))
    store.write_features([make_features(f"v{i}", seed=i) for i in range(3)])
    store.write_features([make_features(f"v{i}", seed=i) for i in range(3, 6)])
    store.write_features([VideoFeatures.failed("vf", "/f.mp4", "boom")])
    store.mark_deleted("v4")
    batches = list(store.iter_features(batch_size=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    got = {f.video_id: f for b in batches for f in b}
    assert set(got) == {"v0", "v1", "v2", "v3", "v5"}
    assert_same(make_features("v5", seed=5), got["v5"])


def test_killed_writer_leaves_nothing_readers_choke_on(tmp_path, monkeypatch):
    store = ShardStore(str(tmp_path))
    store.write_features([make_features("v1")])
    good = store.shard_paths()
    # A writer killed mid-file leaves its temp name behind: half a Parquet file.
    full = open(good[0], "rb").read()
    for kind in ("features", "status"):
        name = f".tmp-part-20240101T000000000000Z-{uuid.uuid4().hex[:8]}.parquet"
        (tmp_path / kind / name).write_bytes(full[: len(full) // 2])
    reader = ShardStore(str(tmp_path))
    assert_same(make_features("v1"), reader.load_features(["v1"])["v1"])
    assert reader.shard_paths() == good and reader.stats()["status_shards"] == 1

    # A write that fails before publishing removes its temp file and publishes nothing.
    def boom(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        store.write_features([make_features("v2")])
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "features").iterdir() if not p.name.startswith(".tmp-")) == \
        [os.path.basename(good[0])]
    assert len(list((tmp_path / "features").glob(".tmp-*"))) == 1  # only the planted one
    assert reader.load_features(["v2"]) == {}


def test_fsspec_remote_style_root():
    """memory:// goes through the same non-local code path as s3:// (fsspec handler, direct put)."""
    root = f"memory://astradup-test-{uuid.uuid4().hex[:8]}/shards"
    store = ShardStore(root)
    path = store.write_features([make_features("m1"), VideoFeatures.failed("m2", "/m2", "bad")])
    assert path.startswith("memory://") and "/features/part-" in path
    assert_same(make_features("m1"), store.load_features(["m1", "m2"])["m1"])
    assert store.latest_status()["m2"]["status"] == STATUS_FAILED
    assert [f.video_id for f in store.read_shard(path)] == ["m1", "m2"]
    assert store.shard_paths() == [path]
    assert pq.read_schema(store.fs.open(path.split("://", 1)[1])).remove_metadata().equals(FEATURES_SCHEMA)
    assert STATUS_SCHEMA.names[-1] == "at"


def test_bad_shapes_are_rejected(tmp_path):
    store = ShardStore(str(tmp_path))
    f = make_features("v")
    f.phash = f.phash[:, :16]
    with pytest.raises(ValueError, match="phash"):
        store.write_features([f])
    f = make_features("v")
    f.embeddings = f.embeddings[:3]
    with pytest.raises(ValueError, match="embeddings"):
        store.write_features([f])
    assert store.shard_paths() == []


def _truncate(path: str) -> int:
    """Cut a shard to half its bytes in place (what a full disk or a killed copy leaves); new size."""
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    return len(data) // 2


def _status_files(root) -> list[str]:
    return sorted(str(p) for p in (root / "status").iterdir() if p.name.startswith("part-"))


@pytest.fixture
def quarantine_log(monkeypatch):
    """Every 'shard quarantined' record, whatever handlers the logging setup left on the logger."""
    import astradup.store.shard_quarantine as quarantine_mod

    seen: list[str] = []
    real = quarantine_mod.log.error

    def record(msg, *args, **kw):
        seen.append(msg % args)
        real(msg, *args, **kw)
    monkeypatch.setattr(quarantine_mod.log, "error", record)
    return seen


def test_truncated_shards_are_quarantined_and_the_rest_keeps_serving(tmp_path, quarantine_log):
    writer = ShardStore(str(tmp_path))
    feat_a = writer.write_features([make_features("v1", seed=1), make_features("v2", seed=2)])
    writer.write_features([make_features("v3", seed=3)])
    writer.write_status([{"video_id": "v4", "status": STATUS_FAILED, "error": "boom"}])
    status_a, status_b, status_c = _status_files(tmp_path)  # (v1, v2), (v3), (v4), in write order
    size_a = _truncate(feat_a)
    _truncate(status_b)

    store = ShardStore(str(tmp_path))
    st = store.latest_status()  # used to raise ArrowInvalid: every listing answered 500
    assert set(st) == {"v1", "v2", "v4"}  # v3's status rows were in the damaged file
    assert set(store.load_features(["v1", "v2", "v3"])) == {"v3"}  # v1, v2's features were in feat_a
    assert [f.video_id for b in store.iter_features() for f in b] == ["v3"]
    assert_same(make_features("v3", seed=3), store.load_features(["v3"])["v3"])
    s = store.stats()
    assert s["shards_quarantined"] == 2 and s["shards"] == 1 and s["status_shards"] == 2
    assert s["videos_unreadable"] == 2 and s["videos_live"] == 1
    assert store.lost_ids() == {"v1", "v2"}  # what a backfill over the sources indexes again
    q = store.quarantined()
    assert set(q) == {feat_a, status_b} and all("ArrowInvalid" in r for r in q.values())
    with pytest.raises(ValueError, match="damaged shard"):
        store.read_shard(feat_a)
    # Left on disk, untouched, for the operator; logged once each however often it is read.
    assert os.path.getsize(feat_a) == size_a and os.path.exists(status_b)
    assert sorted(m.split(": ")[1] for m in quarantine_log if "quarantined" in m) == sorted([feat_a, status_b])
    assert {os.path.basename(p) for p in _status_files(tmp_path)} == {os.path.basename(p) for p in
                                                                      (status_a, status_b, status_c)}


def test_restored_shard_leaves_quarantine(tmp_path):
    store = ShardStore(str(tmp_path))
    path = store.write_features([make_features("v1")])
    good = open(path, "rb").read()
    _truncate(path)
    fresh = ShardStore(str(tmp_path))
    assert fresh.load_features(["v1"]) == {} and fresh.stats()["shards_quarantined"] == 1
    open(path, "wb").write(good)  # the operator restored it from a backup: its size changed back
    assert_same(make_features("v1"), fresh.load_features(["v1"])["v1"])
    assert fresh.stats()["shards_quarantined"] == 0 and fresh.quarantined() == {}


def test_shard_damaged_after_it_was_indexed(tmp_path):
    store = ShardStore(str(tmp_path))
    feat = store.write_features([make_features("v1", seed=1)])
    store.write_features([make_features("v2", seed=2)])
    assert set(store.load_features(["v1", "v2"])) == {"v1", "v2"}  # index built and cached
    # Same size, garbage bytes: the cached index cannot notice, the read itself fails.
    size = os.path.getsize(feat)
    with open(feat, "wb") as f:
        f.write(b"\0" * size)
    assert set(store.load_features(["v1", "v2"])) == {"v2"}
    assert set(store.load_features(["v1", "v2"])) == {"v2"}  # and stays so, without a rebuild loop
    assert store.stats()["shards_quarantined"] == 1 and store.lost_ids() == {"v1"}
    # A status shard truncated under a warm store: the size change makes it re-read, then skip it.
    _truncate(_status_files(tmp_path)[1])
    assert set(store.latest_status()) == {"v1"}
    assert store.stats()["shards_quarantined"] == 2 and os.path.getsize(feat) == size


def test_status_shard_with_foreign_rows_is_quarantined(tmp_path):
    """A readable Parquet file that is not what our writer writes (no ``at``, unknown status)."""
    store = ShardStore(str(tmp_path))
    store.write_features([make_features("v1")])
    import pyarrow as pa

    bad = tmp_path / "status" / "part-20240101T000000000000Z-0badc0de.parquet"
    pq.write_table(pa.table({"video_id": ["x"], "status": ["weird"]}), str(bad))
    bad2 = tmp_path / "status" / "part-20240101T000000000001Z-0badc0df.parquet"
    pq.write_table(pa.table({"video_id": ["y"], "status": ["bogus"], "at": pa.array([1], pa.timestamp("us", "UTC"))}),
                   str(bad2))
    fresh = ShardStore(str(tmp_path))
    assert set(fresh.latest_status()) == {"v1"}
    assert set(fresh.quarantined()) == {str(bad), str(bad2)}


def test_reindex_report_names_the_quarantined_shards_and_what_to_run(tmp_path, capsys):
    """`astradup reindex` rebuilds from the readable shards, then says which were skipped and how
    their videos come back (exit 1, so a scheduled rebuild does not pass for complete)."""
    from types import SimpleNamespace

    from astradup.commands.library import report_quarantine

    store = ShardStore(str(tmp_path))
    bad = store.write_features([make_features("v1"), make_features("v2")])
    store.write_features([make_features("v3")])
    assert report_quarantine(SimpleNamespace(shards=store)) == 0
    _truncate(bad)
    fresh = ShardStore(str(tmp_path))
    assert [f.video_id for b in fresh.iter_features() for f in b] == ["v3"]  # what reindex upserts
    assert report_quarantine(SimpleNamespace(shards=fresh)) == 1
    err = capsys.readouterr().err
    assert bad in err and "2 indexed video(s) lost" in err and "astradup index" in err
    assert os.path.exists(bad)


def test_shards_read_at_once_give_what_one_at_a_time_gives(tmp_path, monkeypatch):
    """``read_concurrency``: a search's candidates in many shards are read a few at a time (object
    storage is latency bound); the records are the same, a damaged shard among them is quarantined
    alone, and no more than the limit are read at once."""
    import threading
    import time

    import astradup.store.shards as shards_mod

    writer = ShardStore(str(tmp_path))
    paths = [writer.write_features([make_features(f"v{i}", seed=i), make_features(f"w{i}", seed=50 + i)])
             for i in range(12)]
    ids = [f"v{i}" for i in range(12)] + [f"w{i}" for i in range(0, 12, 3)]
    one = ShardStore(str(tmp_path), read_concurrency=1).load_features(ids)
    live, peak, lock = [0], [0], threading.Lock()
    real = shards_mod.read_rows

    def counted(*a, **k):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.02)  # long enough for the pool's reads to overlap
        try:
            return real(*a, **k)
        finally:
            with lock:
                live[0] -= 1

    monkeypatch.setattr(shards_mod, "read_rows", counted)
    many = ShardStore(str(tmp_path), read_concurrency=4)
    got = many.load_features(ids)
    assert sorted(got) == sorted(one) == sorted(ids)
    for v in ids:
        assert_same(got[v], one[v])
    assert 1 < peak[0] <= 4
    size = os.path.getsize(paths[5])
    with open(paths[5], "wb") as f:  # damaged after it was indexed
        f.write(b"\0" * size)
    many.cache.clear()
    assert sorted(many.load_features(ids)) == sorted(set(ids) - {"v5"})
    assert many.stats()["shards_quarantined"] == 1
