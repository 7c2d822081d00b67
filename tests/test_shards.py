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
from astradup.store.shards import FEATURES_SCHEMA, STATUS_SCHEMA, ShardStore


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
