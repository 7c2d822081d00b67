"""Recall, memory and build time of Milvus index types on AstraDup frame vectors (docs/scaling.md).

    .venv/bin/astradup --data-dir /tmp/x index /work/benchdata/dev20/sources
    .venv/bin/python benchmarks/index_types.py --data-dir /tmp/x [--n 100000] [--queries 500]

Real SSCD frame vectors come from the data dir's shards; they are too few to see an index's
trade-offs, so the collection is scaled up synthetically: each synthetic "video" is a real video's
frames moved by one random offset (cosine ~0.6 to the original, i.e. related but not a copy) plus
a little per-frame noise, which keeps the real temporal clusters. Queries are "copies": database
frames with noise (cosine ~0.9). Recall@10 is against exact inner-product search in numpy. Memory
is the Milvus server's RSS growth from loading the collection (so it includes the raw vectors an
index keeps), next to the index's nominal bytes per vector. The server is Milvus 2.3 standalone
from the ``milvus`` package, started here on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.backfill_resume import MilvusStandalone  # noqa: E402

INDEXES = {  # name: (index params, search params, nominal bytes per 512-d vector held in memory)
    "FLAT": ({"index_type": "FLAT", "params": {}}, {}, 2048),
    "HNSW": ({"index_type": "HNSW", "params": {"M": 16, "efConstruction": 200}}, {"ef": 64}, 2048 + 16 * 2 * 4),
    "IVF_SQ8": ({"index_type": "IVF_SQ8", "params": {"nlist": 1024}}, {"nprobe": 32}, 512),
    "IVF_PQ": ({"index_type": "IVF_PQ", "params": {"nlist": 1024, "m": 64, "nbits": 8}}, {"nprobe": 32}, 64),
    "DISKANN": ({"index_type": "DISKANN", "params": {}}, {"search_list": 100}, None),
}


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def real_videos(data_dir: str) -> list[np.ndarray]:
    from astradup.config import load_config
    from astradup.store.shards import ShardStore

    cfg = load_config(overrides={"data_dir": data_dir})
    return [f.embeddings for batch in ShardStore(cfg.resolved_shards_dir).iter_features() for f in batch
            if len(f.embeddings)]


def scale_up(videos: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    out, total, d = [], 0, videos[0].shape[1]
    while total < n:
        v = videos[rng.integers(len(videos))]
        offset = rng.standard_normal(d).astype(np.float32) * (1.33 / np.sqrt(d))  # cos ~0.6 to v
        frames = unit(v + offset + rng.standard_normal(v.shape).astype(np.float32) * (0.1 / np.sqrt(d)))
        out.append(frames)
        total += len(frames)
    return np.concatenate(out)[:n]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def exact_top(db: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    out = []
    for i in range(0, len(q), 256):
        s = q[i:i + 256] @ db.T
        out.append(np.argsort(-s, axis=1)[:, :k])
    return np.concatenate(out)


def wait_built(client, coll: str, base: Path, timeout: float) -> str:
    """"" when the index is built; else why not. A 2.3 server retries a failing build forever and
    keeps reporting InProgress, so its log is read for the failure."""
    t0 = time.time()
    log = base / "logs" / "milvus-stdout.log"
    while client.describe_index(coll, "vector").get("state") != "Finished":
        text = log.read_text(errors="replace") if log.exists() else ""
        if "failed to build index" in text:
            line = next(ln for ln in text.splitlines() if "failed to build index" in ln)
            return "server log: " + line[line.find("[error="):][:200]
        if time.time() - t0 > timeout:
            return f"not built within {timeout:.0f} s"
        time.sleep(1)
    return ""


def measure(name: str, db: np.ndarray, queries: np.ndarray, truth: np.ndarray, k: int,
            build_timeout: float = 1800.0) -> dict:
    """Build one index in a fresh server, restart it, and measure what loading the collection costs.

    The restart matters: a server that just ingested and indexed holds buffers it may reuse, so
    RSS growth measured in the same process understates (or even inverts) the load cost.
    """
    from pymilvus import DataType, MilvusClient

    index, search, nominal = INDEXES[name]
    base = Path(tempfile.mkdtemp(prefix="astradup-idx-"))
    coll = f"bench_{name.lower()}"
    server = MilvusStandalone(base)
    try:
        client = MilvusClient(uri=server.uri)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=db.shape[1])
        client.create_collection(coll, schema=schema, consistency_level="Strong")
        for i in range(0, len(db), 5000):
            client.insert(coll, [{"id": j, "vector": v} for j, v in zip(range(i, i + 5000), db[i:i + 5000])])
        client.flush(coll)
        t0 = time.time()
        params = client.prepare_index_params()
        params.add_index(field_name="vector", metric_type="IP", **index)
        client.create_index(coll, params, sync=False)
        error = wait_built(client, coll, base, build_timeout)
        if error:  # an index this server cannot build is reported, not hidden
            shutil.rmtree(base, ignore_errors=True)
            return {"index": name, "error": error}
        build_s = time.time() - t0
        client.close()
    finally:
        server.stop()
    server = MilvusStandalone(base)
    try:
        client = MilvusClient(uri=server.uri)
        pid = server.server.server_proc.pid
        time.sleep(3)
        before = rss_mb(pid)
        client.load_collection(coll)
        time.sleep(3)
        loaded = rss_mb(pid) - before
        t0 = time.time()
        hits = []
        for i in range(0, len(queries), 100):
            res = client.search(coll, data=list(queries[i:i + 100]), limit=k, anns_field="vector",
                                search_params={"metric_type": "IP", "params": search})
            hits += [[h["id"] for h in row] for row in res]
        search_ms = (time.time() - t0) * 1000 / len(queries)
        client.close()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    recall = float(np.mean([len(set(h) & set(t)) / k for h, t in zip(hits, truth.tolist())]))
    return {"index": name, "params": index["params"], "search": search, "recall_at_10": recall,
            "build_s": build_s, "load_rss_mb": loaded, "rss_bytes_per_vector": loaded * 2**20 / len(db),
            "nominal_bytes_per_vector": nominal, "search_ms_per_query": search_ms}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True, help="an AstraDup data dir with indexed shards")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--indexes", default=",".join(INDEXES))
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the Milvus server

    rng = np.random.default_rng(0)
    videos = real_videos(args.data_dir)
    real = np.concatenate(videos)
    db = scale_up(videos, args.n, rng)
    qi = rng.choice(len(db), args.queries, replace=False)
    queries = unit(db[qi] + rng.standard_normal((args.queries, db.shape[1])).astype(np.float32) * (0.5 / np.sqrt(db.shape[1])))
    truth = exact_top(db, queries, args.k)
    print(f"{len(videos)} real videos, {len(real)} real frame vectors -> {len(db)} vectors of {db.shape[1]} d; "
          f"query-to-source cosine {float(np.mean(np.sum(queries * db[qi], axis=1))):.2f}")

    results = []
    for name in args.indexes.split(","):
        row = measure(name, db, queries, truth, args.k)
        results.append(row)
        if "error" in row:
            print(f"{name:8} not built: {row['error']}")
        else:
            print(f"{name:8} recall@{args.k} {row['recall_at_10']:.3f}  build {row['build_s']:6.1f} s  "
                  f"load +{row['load_rss_mb']:7.1f} MB ({row['rss_bytes_per_vector']:.0f} B/vector, nominal "
                  f"{row['nominal_bytes_per_vector']})  {row['search_ms_per_query']:.2f} ms/query", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"n": len(db), "dim": int(db.shape[1]), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
