"""The catalog index: O(1) lookups, incremental shard discovery, clock skew, the feature cache."""
from __future__ import annotations

import time

import numpy as np
import pyarrow.parquet as pq
import pytest

import astradup.store.shard_names as shard_names
import astradup.store.shard_writer as shard_writer
import astradup.store.shards as shards_mod
from astradup.config import load_config
from astradup.errors import ConfigError
from astradup.records import STATUS_DELETED, STATUS_OK
from astradup.store.catalog_index import FeatureCache, features_nbytes
from astradup.store.shards import ShardStore
from tests.store.test_shards import assert_same, make_features


@pytest.fixture
def other_process(monkeypatch):
    """Writers of another process: their shards do not bump this process's generation counter,
    so a reader finds them only by listing, as it would across processes."""
    monkeypatch.setattr(shard_writer, "bump_generation", lambda root: None)


def _delta(store: ShardStore, before: dict) -> dict:
    return {k: store.io[k] - before[k] for k in store.io}


def test_lookups_read_only_the_row_groups_of_the_wanted_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(shard_writer, "ROW_GROUP_BYTES", 1)  # one row per row group
    writer = ShardStore(str(tmp_path))
    made = {}
    for s in range(3):
        batch = [make_features(f"v{s}-{i}", seed=10 * s + i) for i in range(6)]
        made.update({f.video_id: f for f in batch})
        writer.write_features(batch)
    store = ShardStore(str(tmp_path), refresh_s=60, full_list_s=600)
    ids = ["v0-1", "v0-4", "v2-5", "v1-0", "missing"]
    before = dict(store.io)
    reads = []
    real = pq.ParquetFile.read_row_groups

    def spy(self, row_groups, *a, **kw):
        reads.append(sorted(row_groups))
        return real(self, row_groups, *a, **kw)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", spy)
    got = store.load_features(ids)
    assert set(got) == set(ids) - {"missing"}
    for vid in got:
        assert_same(made[vid], got[vid])
    # One open per shard indexed (3 features + 3 status) + one per shard read (3); none per video.
    assert _delta(store, before)["parquet_opens"] == 9
    # Rows are sorted by id in a shard: v0-1 and v0-4 are groups 1 and 4, v1-0 is 0, v2-5 is 5.
    assert sorted(reads) == [[0], [1, 4], [5]]
    # Same rows as a whole-shard read (the old path) gives.
    for path in store.shard_paths():
        for f in store.read_shard(path):
            assert_same(f, store.load_features([f.video_id])[f.video_id])


def test_a_query_between_refreshes_lists_nothing(tmp_path, other_process):
    ShardStore(str(tmp_path)).write_features([make_features("v1", seed=1)])
    store = ShardStore(str(tmp_path), refresh_s=60, full_list_s=600)
    assert set(store.load_features(["v1"])) == {"v1"}
    before = dict(store.io)
    for _ in range(20):
        assert set(store.load_features(["v1"])) == {"v1"}
        assert store.status_of("v1", fresh=False)["status"] == STATUS_OK
        assert set(store.statuses_of(["v1", "nope"])) == {"v1"}
    assert _delta(store, before)["lists"] == 0


def test_another_writers_shard_is_found_after_the_interval_without_a_full_listing(tmp_path, other_process):
    writer = ShardStore(str(tmp_path))
    for i in range(20):
        writer.write_features([make_features(f"old{i}", seed=i)])
    reader = ShardStore(str(tmp_path), refresh_s=1.0, full_list_s=600, lookback_s=0)
    assert len(reader.statuses_of([f"old{i}" for i in range(20)])) == 20
    writer.write_features([make_features("new", seed=99)])
    before = dict(reader.io)
    assert reader.statuses_of(["new"]) == {}  # within refresh_s: not listed yet
    assert _delta(reader, before)["lists"] == 0
    time.sleep(1.05)
    assert reader.statuses_of(["new"])["new"]["status"] == STATUS_OK
    d = _delta(reader, before)
    assert d["full_lists"] == 0 and d["lists"] == 2  # one scan per kind (features, status)
    assert d["parquet_opens"] == 2  # only the new features and status shards were read
    assert d["list_entries"] <= 4  # the new shards and the watermark's own, not the 20 old ones
    assert_same(make_features("new", seed=99), reader.load_features(["new"])["new"])


def test_an_unknown_id_forces_an_early_refresh(tmp_path, other_process):
    writer = ShardStore(str(tmp_path))
    writer.write_features([make_features("a", seed=1)])
    reader = ShardStore(str(tmp_path), refresh_s=600, full_list_s=600)
    assert set(reader.load_features(["a"])) == {"a"}
    writer.write_features([make_features("b", seed=2)])  # its vectors are in Milvus: search asks for it
    time.sleep(shards_mod.MISS_REFRESH_S + 0.05)
    before = dict(reader.io)
    assert set(reader.load_features(["a"])) == {"a"}  # known ids never list
    assert _delta(reader, before)["lists"] == 0
    assert set(reader.load_features(["a", "b"])) == {"a", "b"}
    assert _delta(reader, before)["full_lists"] == 0


def test_own_writes_and_same_process_writers_show_at_once(tmp_path):
    store = ShardStore(str(tmp_path), refresh_s=600, full_list_s=600)
    assert store.load_features(["x"]) == {}
    ShardStore(str(tmp_path)).write_features([make_features("x", seed=3)])
    assert set(store.load_features(["x"])) == {"x"}
    ShardStore(str(tmp_path)).mark_deleted("x")
    assert store.load_features(["x"]) == {}
    assert store.status_of("x", fresh=False)["status"] == STATUS_DELETED


def test_a_name_from_a_slow_clock_is_found(tmp_path, other_process, monkeypatch):
    writer = ShardStore(str(tmp_path))
    writer.write_features([make_features("now", seed=1)])
    look = ShardStore(str(tmp_path), refresh_s=0.05, full_list_s=600, lookback_s=30)
    late = ShardStore(str(tmp_path), refresh_s=0.05, full_list_s=3.0, lookback_s=0)
    assert set(look.load_features(["now"])) == set(late.load_features(["now"])) == {"now"}
    real = shard_names.now_us
    monkeypatch.setattr(shard_names, "now_us", lambda: real() - 10_000_000)  # a clock 10 s slow
    writer.write_features([make_features("slow", seed=2)])
    monkeypatch.setattr(shard_names, "now_us", real)
    time.sleep(0.3)
    # Within the look-back window: the next incremental refresh finds it.
    assert set(look.load_features(["slow"])) == {"slow"} and look.io["full_lists"] == 1
    # Without a look-back an incremental refresh misses it; the periodic full listing does not.
    assert late.load_features(["slow"]) == {}
    time.sleep(3.0)
    assert set(late.load_features(["slow"])) == {"slow"} and late.io["full_lists"] == 2
    assert_same(make_features("slow", seed=2), late.load_features(["slow"])["slow"])


def test_the_cache_serves_repeats_and_never_a_stale_row(tmp_path):
    store = ShardStore(str(tmp_path), refresh_s=600, full_list_s=600, cache_bytes=10 << 20)
    store.write_features([make_features("v1", seed=1), make_features("v2", seed=2)])
    store.load_features(["v1", "v2"])
    before = dict(store.io)
    got = store.load_features(["v1", "v2"])
    assert _delta(store, before)["parquet_opens"] == 0 and store.cache.hits == 2
    got["v1"].embeddings[:] = 0  # the caller's copy: the cached record is untouched
    assert_same(make_features("v1", seed=1), store.load_features(["v1"])["v1"])
    store.write_features([make_features("v1", seed=7)])  # re-indexed: a newer row
    assert_same(make_features("v1", seed=7), store.load_features(["v1"])["v1"])
    store.mark_deleted("v2")
    assert store.load_features(["v2"]) == {}


def test_the_cache_keeps_to_its_byte_cap():
    recs = [make_features(f"v{i}", seed=i) for i in range(10)]
    one = features_nbytes(recs[0])
    cache = FeatureCache(3 * one + one // 2)
    for i, f in enumerate(recs):
        cache.put(f.video_id, ("shard", i), f)
        assert cache.bytes <= cache.cap
    assert len(cache) == 3 and cache.bytes == 3 * one
    assert cache.get("v0", ("shard", 0)) is None  # evicted, least recently used first
    assert cache.get("v7", ("shard", 7)) is not None
    cache.put("v10", ("shard", 10), make_features("v10", seed=10))  # evicts v8, not v7 (just used)
    assert cache.get("v8", ("shard", 8)) is None and cache.get("v7", ("shard", 7)) is not None
    assert cache.get("v7", ("shard", 99)) is None  # another row of the video: not this entry
    tiny = FeatureCache(one - 1)
    tiny.put("v0", ("shard", 0), recs[0])  # larger than the whole cache: not kept
    assert len(tiny) == 0 and tiny.bytes == 0
    off = FeatureCache(0)
    off.put("v0", ("shard", 0), recs[0])
    assert off.get("v0", ("shard", 0)) is None


def test_latest_status_shape_is_unchanged(tmp_path):
    store = ShardStore(str(tmp_path), refresh_s=600, full_list_s=600)
    store.write_features([make_features("v1", seed=1)])
    store.write_status([{"video_id": "v2", "status": "failed", "error": "boom", "uri": "/x.mp4"}])
    st = store.latest_status()
    assert set(st) == {"v1", "v2"}
    assert set(st["v1"]) == {"video_id", "uri", "status", "error", "size", "duration", "at"}
    assert (st["v1"]["size"], st["v1"]["duration"], st["v1"]["uri"]) == (123456, 7.25, "/videos/v1.mp4")
    assert (st["v2"]["status"], st["v2"]["error"]) == ("failed", "boom")
    assert st["v1"]["at"].tzinfo is not None
    assert store.status_of("v2") == st["v2"] and store.statuses_of(["v1"]) == {"v1": st["v1"]}


def test_catalog_config_is_validated():
    c = load_config(environ={}).catalog
    assert (c.refresh_s, c.full_list_s, c.lookback_s, c.feature_cache_mb) == (2.0, 300.0, 60.0, 256.0)
    for bad in ({"refresh_s": -1}, {"feature_cache_mb": float("nan")}, {"refresh_s": 10, "full_list_s": 5}):
        with pytest.raises(ConfigError, match="catalog"):
            load_config(environ={}, overrides={"catalog": bad})
    assert load_config(environ={}, overrides={"catalog": {"refresh_s": 0, "full_list_s": 0}}).catalog.refresh_s == 0


def test_index_arrays_grow_past_their_first_capacity(tmp_path):
    store = ShardStore(str(tmp_path))
    store._index = type(store._index)(capacity=2)
    batch = [make_features(f"g{i}", seed=i, t=2, d=4, w=1, da=4) for i in range(9)]
    store.write_features(batch)
    got = store.load_features([f.video_id for f in batch])
    assert set(got) == {f.video_id for f in batch}
    np.testing.assert_array_equal(got["g8"].timestamps, batch[8].timestamps)


def test_s3_refresh_lists_only_names_after_the_watermark(s3_bucket, s3_endpoint, other_process):
    """On S3 a refresh is LIST with StartAfter: one request, answering only the new shards."""
    from astradup.io.remote import storage_options

    _, bucket = s3_bucket
    root = f"s3://{bucket}/shards"
    writer = ShardStore(root, storage_options(s3_endpoint))
    for i in range(5):
        writer.write_features([make_features(f"old{i}", seed=i)])
    reader = ShardStore(root, storage_options(s3_endpoint), refresh_s=0.05, full_list_s=600, lookback_s=0)
    assert len(reader.statuses_of([f"old{i}" for i in range(5)])) == 5
    writer.write_features([make_features("new", seed=9)])
    time.sleep(0.1)
    before = dict(reader.io)
    assert_same(make_features("new", seed=9), reader.load_features(["new"])["new"])
    d = _delta(reader, before)
    assert d["full_lists"] == 0 and d["lists"] == 2 and d["list_entries"] <= 4
    assert d["parquet_opens"] == 3  # the new features and status shards, then the one read
    time.sleep(0.1)
    before = dict(reader.io)
    reader.refresh()  # nothing new: one LIST page per kind, listing at most the watermark's own name
    assert _delta(reader, before)["list_entries"] <= 2 and _delta(reader, before)["parquet_opens"] == 0
