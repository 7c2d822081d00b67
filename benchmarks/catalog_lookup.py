"""Catalog lookup cost vs library size: the incremental index against a full listing per call.

Writes N synthetic single-video shards through ShardStore (N = 1000 and 10000 by default), then
measures, in the same run:

* ``lookup``: ``load_features`` of a batch of 20 random ids, p50 / p95 over ``--queries`` calls,
  (a) as the catalog now runs (``catalog.*`` defaults: refresh at most every 2 s, cache on),
  (b) the same with the cache off (every call reads the row groups), and
  (c) the old per-call cost: ``refresh_s=0, full_list_s=0``, i.e. every call lists every shard
      and checks every size before reading (what ``_refresh`` did on every search).
* ``refresh``: one refresh when nothing is new (incremental: names after the watermark) and
  one with a shard just published by another writer, against a full listing.

Ratios are old / new (higher = the new path is cheaper). Local disk only (on S3 the listing gap
is larger: a full LIST of N keys is N/1000 requests, the incremental one is one).

    python benchmarks/catalog_lookup.py [--sizes 1000,10000] [--queries 200]

Taken 2026-12-04 on 2 shared cores, local disk, --queries 100 (ms; old/new in brackets):

    N       lookup p50 new / cache off / old     p95 new / old     refresh nothing new: incr / full
    1000    23 / 49 / 53 (x2.3)                  57 / 76 (x1.3)    4.8 / 11.8 (x2.5)
    10000   38 / 41 / 194 (x5.1)                 44 / 225 (x5.1)   61 / 140 (x2.3)

The lookup no longer grows with N (a query lists nothing; what is left is one open per shard
holding a candidate: here every video is its own shard, the worst case). A local refresh still
scans the directory (O(files), names only, every ``refresh_s``, not per query); on S3 it is one
LIST page.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import astradup.store.shard_writer as shard_writer  # noqa: E402
from astradup.records import VideoFeatures  # noqa: E402
from astradup.store.shards import ShardStore  # noqa: E402


def _video(i: int, rng: np.random.Generator) -> VideoFeatures:
    t, d = 8, 64
    emb = rng.normal(size=(t, d)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return VideoFeatures(video_id=f"{i:012x}", uri=f"/v/{i}.mp4", timestamps=np.arange(t, dtype=np.float32),
                         embeddings=emb, phash=rng.integers(0, 256, (t, 32), dtype=np.uint8),
                         audio_windows=np.zeros((0, 2), np.float32), audio_vectors=np.zeros((0, 8), np.float32),
                         chromaprint=np.zeros(0, np.uint32), chromaprint_hz=0.0, meta={"duration": 8.0})


def _pct(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


def _lookups(store: ShardStore, ids: list[str], queries: int, rng: np.random.Generator) -> list[float]:
    out = []
    for _ in range(queries):
        batch = list(rng.choice(ids, 20, replace=False))
        t0 = time.perf_counter()
        got = store.load_features(batch)
        out.append(time.perf_counter() - t0)
        assert len(got) == 20
    return out


def run(n: int, queries: int) -> None:
    rng = np.random.default_rng(n)
    with tempfile.TemporaryDirectory() as root:
        writer = ShardStore(root)
        t0 = time.perf_counter()
        for i in range(n):
            writer.write_features([_video(i, rng)])
        print(f"\nN={n} shards (1 video each): written in {time.perf_counter() - t0:.1f} s")
        ids = [f"{i:012x}" for i in range(n)]
        # Another "process": its writes reach readers by listing only.
        shard_writer.bump_generation = lambda root: None

        new = ShardStore(root, refresh_s=2.0, full_list_s=300.0, lookback_s=60.0, cache_bytes=256 << 20)
        nocache = ShardStore(root, refresh_s=2.0, full_list_s=300.0, lookback_s=60.0, cache_bytes=0)
        old = ShardStore(root)  # refresh_s=0, full_list_s=0: a full listing on every call
        t0 = time.perf_counter()
        new.refresh()
        print(f"  index build (key columns of {2 * n} shards, once per process): {time.perf_counter() - t0:.2f} s")
        nocache.refresh()
        old.refresh()

        rows = {}
        for name, s in (("new (cache on)", new), ("new (cache off)", nocache), ("old: full listing", old)):
            rows[name] = _pct(_lookups(s, ids, queries, rng))
        o50, o95 = rows["old: full listing"]
        for name, (p50, p95) in rows.items():
            print(f"  lookup 20 ids  {name:18s} p50 {p50:8.2f} ms  p95 {p95:8.2f} ms"
                  f"  old/new p50 x{o50 / p50:6.1f}  p95 x{o95 / p95:6.1f}")

        look = ShardStore(root, refresh_s=0.0, full_list_s=3600.0, lookback_s=60.0)
        look.refresh()
        inc, full = [], []
        for _ in range(20):
            t0 = time.perf_counter()
            look.refresh()
            inc.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            old.refresh()
            full.append(time.perf_counter() - t0)
        i50, f50 = _pct(inc)[0], _pct(full)[0]
        print(f"  refresh, nothing new: incremental p50 {i50:7.2f} ms, full listing {f50:7.2f} ms  x{f50 / i50:6.1f}")
        writer.write_features([_video(n, rng)])
        t0 = time.perf_counter()
        look.refresh()
        i1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        old.refresh()
        f1 = time.perf_counter() - t0
        print(f"  refresh, one new shard: incremental {1000 * i1:7.2f} ms, full listing {1000 * f1:7.2f} ms"
              f"  x{f1 / i1:6.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--queries", type=int, default=200)
    a = ap.parse_args()
    for n in (int(x) for x in a.sizes.split(",")):
        run(n, a.queries)


if __name__ == "__main__":
    main()
