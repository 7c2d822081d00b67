"""Candidate fetch: a search's candidates read one shard after another against ``catalog.read_concurrency``
shards at once, on local disk and on S3 (a moto server), in the same run.

A search reads its ~20 candidates' features from as many shards (``ShardStore.load_features``, the
cache off here so every call reads). On object storage each shard read is a few round trips (open,
footer, row group), so the reads' latency adds up one after another; read at once it overlaps.

The library: ``--shards DIR`` (e.g. a ``benchmarks/library_scale.py`` cache's
``n10000/shards``), else ``--videos`` synthetic videos written here through ``ShardStore`` in
shards of 100 (as the backfill writes them). The same random id sets are read at every setting.

    .venv/bin/python benchmarks/shard_fetch.py [--shards DIR] [--s3] [--calls 40] [--batch 20]

Not part of ``make test``; figures in docs/scaling.md ("sixth round").
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")  # moto
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from astradup.io.remote import storage_options  # noqa: E402
from astradup.records import VideoFeatures  # noqa: E402
from astradup.store.shards import ShardStore  # noqa: E402


def synthetic(root: str, n: int, seed: int) -> None:
    """``n`` videos of 30-300 frames (512-d, audio 218-d) in shards of 100."""
    rng = np.random.default_rng(seed)
    store = ShardStore(root)
    batch = []
    for i in range(n):
        t = int(rng.integers(30, 300))
        w = max(1, t - 4)
        emb = rng.normal(size=(t, 512)).astype(np.float32)
        av = rng.normal(size=(w, 218)).astype(np.float32)
        starts = np.arange(w, dtype=np.float32)
        batch.append(VideoFeatures(
            f"syn{i:06d}", f"/v/syn{i}.mp4", np.arange(t, dtype=np.float32), emb / np.linalg.norm(emb, axis=1, keepdims=True),
            rng.integers(0, 256, (t, 32), dtype=np.uint8), np.stack([starts, starts + 5], axis=1),
            av / np.linalg.norm(av, axis=1, keepdims=True), rng.integers(0, 2**31, int(t * 8), dtype=np.uint32),
            8.0, {"duration": float(t)}))
        if len(batch) == 100:
            store.write_features(batch)
            batch = []
    if batch:
        store.write_features(batch)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def measure(root: str, opts: dict | None, id_sets: list[list[str]], levels: list[int]) -> dict[int, list[float]]:
    """Per concurrency level, the seconds of each ``load_features`` call (levels interleaved per call,
    so a slow moment hits every level alike)."""
    stores = {c: ShardStore(root, opts, read_concurrency=c, cache_bytes=0) for c in levels}
    for k, s in enumerate(stores.values()):
        t0 = time.perf_counter()
        s.load_features(id_sets[0])  # the index is built here, not in the timed calls
        if k == 0:
            print(f"  catalog index of {len(s.latest_status())} videos built by a first lookup in "
                  f"{time.perf_counter() - t0:.1f} s; RSS now {rss_mb():.0f} MB", flush=True)
    out: dict[int, list[float]] = {c: [] for c in levels}
    for ids in id_sets:
        for c, s in stores.items():
            t0 = time.perf_counter()
            got = s.load_features(ids)
            out[c].append(time.perf_counter() - t0)
            if len(got) != len(ids):
                raise SystemExit(f"read {len(got)} of {len(ids)} videos at concurrency {c}")
    return out


def report(where: str, times: dict[int, list[float]]) -> None:
    base = times[min(times)]
    for c, xs in times.items():
        print(f"  {where:5s} read_concurrency {c:2d}: p50 {pct(xs, 50):6.0f} ms, p95 {pct(xs, 95):6.0f} ms  "
              f"(p50 x{pct(base, 50) / pct(xs, 50):.2f}, p95 x{pct(base, 95) / pct(xs, 95):.2f} against 1)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", default="", help="an existing shards dir (else --videos synthetic ones)")
    ap.add_argument("--videos", type=int, default=2000)
    ap.add_argument("--s3", action="store_true", help="also with the shards copied to a moto S3 server")
    ap.add_argument("--s3-only", action="store_true", help="only the S3 figures")
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--batch", type=int, default=20, help="videos per call (a search's candidates)")
    ap.add_argument("--levels", default="1,4,8")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    levels = sorted({int(x) for x in args.levels.split(",")})
    tmp = tempfile.TemporaryDirectory(prefix="shard_fetch_")
    root = args.shards or os.path.join(tmp.name, "shards")
    if not args.shards:
        t0 = time.time()
        synthetic(root, args.videos, args.seed)
        print(f"  wrote {args.videos} synthetic videos in {time.time() - t0:.0f} s", flush=True)
    ids = sorted(v for v, r in ShardStore(root).latest_status().items() if r["status"] == "ok")
    rng = np.random.default_rng(args.seed)
    id_sets = [[str(v) for v in rng.choice(ids, args.batch, replace=False)] for _ in range(args.calls)]
    files = sum(len(f) for _, _, f in os.walk(root))
    print(f"# shard fetch {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {len(ids)} videos in {files} "
          f"files, {args.calls} calls of {args.batch} ids, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
          flush=True)
    if not args.s3_only:
        report("local", measure(root, None, id_sets, levels))
    if args.s3 or args.s3_only:
        import s3fs

        from tests.moto_process import moto_server

        with moto_server() as endpoint:
            fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
            fs.mkdir("fetch")
            t0 = time.time()
            fs.put(root.rstrip("/") + "/", "fetch/shards/", recursive=True)
            print(f"  copied to S3 (moto) in {time.time() - t0:.0f} s", flush=True)
            report("s3", measure("s3://fetch/shards", storage_options(endpoint), id_sets, levels))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
