"""Opening shards: footers kept in a bounded cache by (path, size), and on object storage a warm
read of one shard's rows is one GET (no HEAD, no footer fetch, no read-ahead)."""
from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from astradup.io.remote import storage_options
from astradup.store.shard_listing import FooterCache, footer_cost
from astradup.store.shards import ShardStore
from tests.store.test_shards import assert_same, make_features


def _footer(tmp_path, name: str, rows: int):
    path = tmp_path / f"{name}.parquet"
    pq.write_table(pa.table({"x": list(range(rows)), "s": [f"{name}-{i}" for i in range(rows)]}), path,
                   row_group_size=max(1, rows // 3))
    return pq.read_metadata(path)


def test_footer_cache_is_bounded_and_keyed_by_size(tmp_path):
    mds = [_footer(tmp_path, f"f{i}", 20 + i) for i in range(6)]
    cap = sum(footer_cost(m) for m in mds[:3])
    cache = FooterCache(cap)
    for i, m in enumerate(mds):
        cache.put(f"p{i}", 100, m)
        assert cache.nbytes <= cap
    assert cache.get("p0", 100) is None and cache.get("p5", 100) is mds[5]  # oldest out first
    assert cache.get("p5", 101) is None  # same name, other size: a rewritten file is a miss
    cache.get("p3", 100)  # used: now the newest
    cache.put("p6", 100, mds[0])
    assert cache.get("p3", 100) is not None and cache.get("p4", 100) is None
    cache.drop("p3")
    assert cache.get("p3", 100) is None and cache.get("p6", 100) is mds[0]
    assert cache.nbytes == sum(footer_cost(cache.get(*k)) for k in cache.keys()) > 0
    tiny = FooterCache(10)
    tiny.put("p", 1, mds[0])  # a footer over the whole cap is not kept
    assert len(tiny) == 0 and tiny.nbytes == 0


def test_warm_footers_give_the_same_records_and_a_shard_changed_later_is_quarantined(tmp_path):
    writer = ShardStore(str(tmp_path))
    paths = [writer.write_features([make_features(f"v{i}", seed=i), make_features(f"w{i}", seed=9 + i)])
             for i in range(4)]
    ids = [f"v{i}" for i in range(4)] + ["w2"]
    cold = ShardStore(str(tmp_path))
    first = cold.load_features(ids)  # the index build read every footer and kept it
    hits = cold.io["footer_hits"]
    assert hits >= 4
    cold.cache.clear()
    again = cold.load_features(ids)
    assert cold.io["footer_hits"] == hits + 4
    for v in ids:
        assert_same(first[v], again[v])
        assert_same(first[v], make_features(v, seed=int(v[1:]) + (9 if v[0] == "w" else 0)))
    # Rewritten in place at the same size after its footer was cached: the stale footer points
    # into other bytes; the shard is quarantined alone, nothing else is lost.
    size = os.path.getsize(paths[1])
    with open(paths[1], "r+b") as f:
        f.seek(4)
        f.write(b"\xff" * (size - 4 - 8))
    cold.cache.clear()
    assert sorted(cold.load_features(ids)) == sorted(set(ids) - {"v1"})
    assert cold.stats()["shards_quarantined"] == 1
    assert all(key[0] != paths[1] for key in cold._root.footers.keys())


def test_warm_s3_read_is_one_get_per_shard(s3_bucket, s3_endpoint):
    fs, bucket = s3_bucket
    root = f"s3://{bucket}/shards"
    opts = storage_options(s3_endpoint)
    writer = ShardStore(root, opts)
    for i in range(3):
        writer.write_features([make_features(f"v{i}", seed=i), make_features(f"w{i}", seed=9 + i)])
    store = ShardStore(root, opts, read_concurrency=1)
    ids = ["v0", "v1", "w2"]
    store.load_features(["v0"])  # builds the index: every footer read once
    store.cache.clear()
    calls: list[str] = []
    real = store.fs._call_s3

    async def counted(method, *a, **k):
        calls.append(getattr(method, "__name__", str(method)))
        return await real(method, *a, **k)

    store.fs._call_s3 = counted
    got = store.load_features(ids)
    for v in ids:
        assert_same(got[v], make_features(v, seed=int(v[1:]) + (9 if v[0] == "w" else 0)))
    # the refresh's one LIST per kind (nothing new), then one ranged GET per shard and no HEAD
    assert [c for c in calls if c != "list_objects_v2"] == ["get_object"] * 3, calls
    assert calls.count("list_objects_v2") == 2


@pytest.mark.parametrize("keep", [True, False])
def test_status_shards_are_not_kept(tmp_path, keep):
    writer = ShardStore(str(tmp_path))
    writer.write_features([make_features("v0")])
    writer.write_status([{"video_id": "v0", "uri": "/v0", "status": "deleted", "reason": ""}]) if keep else None
    store = ShardStore(str(tmp_path))
    store.refresh()
    kept = [p for p, _ in store._root.footers.keys()]
    assert len(kept) == 1 and "/features/" in kept[0]


def test_written_shards_keep_statistics_only_where_a_filter_could_use_them(tmp_path):
    """Min/max of the per-frame blobs were two copies of a value per row group in every footer."""
    from astradup.store.shard_schema import STATS_COLUMNS

    path = ShardStore(str(tmp_path)).write_features([make_features(f"v{i}", seed=i, t=40) for i in range(6)])
    md = pq.read_metadata(path)
    rg = md.row_group(0)
    stats = {rg.column(i).path_in_schema: rg.column(i).is_stats_set for i in range(md.num_columns)}
    assert stats["video_id"] and stats["indexed_at"] and "video_id" in STATS_COLUMNS
    assert not stats["phash"] and not stats["meta_json"] and not stats["embeddings.list.element"]
    t = pq.read_table(path)
    full = pa.BufferOutputStream()
    pq.write_table(t, full, row_group_size=md.row_group(0).num_rows)
    assert md.serialized_size < pq.read_metadata(pa.BufferReader(full.getvalue())).serialized_size
