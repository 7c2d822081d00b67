"""Write paths of the indexer against a Milvus server: the driver writes every batch, or writer actors do.

    .venv/bin/python benchmarks/write_paths.py [--videos 200] [--batch 20] [--writers 2] [--frames 60]
        [--milvus-uri http://host:19530] [--json OUT]

The same synthetic feature batches (SSCD-sized 512-d frames, pHash, 218-d audio windows and a
Chromaprint, one video = ``--frames`` seconds at 1 fps), pickled as the embed stage ships them, go
through both last stages of astradup.pipeline in one run, on one Ray and one Milvus server (the
tests' harness starts one on 127.0.0.1 unless ``--milvus-uri`` names one):

* driver: ``ray.data.from_items(rows).iter_batches(write_batch)`` in the driver, ``Catalog.write``
  per batch (vectors then shard), as ``pipeline.index`` does with ``pipeline.writers: driver``;
* workers: ``pipeline.add_writers`` (``--writers`` WriteStage actors, each its own Milvus client
  and ShardStore) and the driver only iterating the summaries, as with ``pipeline.writers: workers``.

Each path writes into collections and a shards dir of its own, made before the clock starts. Printed:
videos/s and vector rows/s of each, and workers/driver. Decode and embedding are left out on purpose:
this is the cost of writing alone, the part the driver funnels.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from astradup.catalog import Catalog  # noqa: E402
from astradup.config import load_config  # noqa: E402
from astradup.pipeline import ensure_ray  # noqa: E402
from astradup.write_stage import FrameDim, add_writers  # noqa: E402
from astradup.records import STATUS_OK, VideoFeatures  # noqa: E402

FRAME_DIM, AUDIO_DIM = 512, 218


def _video(i: int, frames: int, rng: np.random.Generator) -> VideoFeatures:
    emb = rng.normal(size=(frames, FRAME_DIM)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    w = max(1, frames - 4)
    aud = rng.normal(size=(w, AUDIO_DIM)).astype(np.float32)
    aud /= np.linalg.norm(aud, axis=1, keepdims=True)
    starts = np.arange(w, dtype=np.float32)
    return VideoFeatures(
        video_id=f"{i:032x}", uri=f"/bench/v{i}.mp4", timestamps=np.arange(frames, dtype=np.float32),
        embeddings=emb, phash=rng.integers(0, 256, (frames, 32), dtype=np.uint8),
        audio_windows=np.stack([starts, starts + 5.0], axis=1),
        audio_vectors=aud, chromaprint=rng.integers(0, 2**32, frames * 8, dtype=np.uint32),
        chromaprint_hz=8.0, meta={"duration": float(frames), "size": 1000 + i})


def _rows(n: int, frames: int) -> list[dict]:
    rng = np.random.default_rng(n)
    return [{"video_id": f.video_id, "uri": f.uri, "status": STATUS_OK, "error": "",
             "payload": pickle.dumps((f, None), protocol=5)}
            for f in (_video(i, frames, rng) for i in range(n))]


def _cfg(root: Path, uri: str, name: str, batch: int, writers: int):
    return load_config(overrides={
        "data_dir": str(root / name), "milvus_uri": uri, "collection_prefix": f"wbench_{name}",
        "pipeline": {"dashboard": False, "write_batch": batch, "write_concurrency": writers,
                     "writers": "driver" if name == "driver" else "workers"}})


def _prepare(cfg) -> Catalog:
    """Collections made (dropped first) and the shards dir empty, before any clock runs."""
    cat = Catalog(cfg, embedder=FrameDim(FRAME_DIM))
    cat._vectors = cat._open_vectors(recreate=True)
    return cat


def run_driver(rows: list[dict], cfg) -> tuple[float, int]:
    import ray.data

    cat = _prepare(cfg)
    ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // cfg.pipeline.write_batch))
    t0 = time.perf_counter()
    done = 0
    for batch in ds.iter_batches(batch_size=cfg.pipeline.write_batch, batch_format="numpy"):
        feats = [pickle.loads(p)[0] for p in batch["payload"]]
        cat.write(feats)
        done += len(feats)
    return time.perf_counter() - t0, done


def run_workers(rows: list[dict], cfg) -> tuple[float, int]:
    import ray.data

    _prepare(cfg).vectors.close()
    ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // cfg.pipeline.write_batch))
    t0 = time.perf_counter()
    done = 0
    for batch in add_writers(ds, cfg).iter_batches(batch_size=None, batch_format="numpy"):
        done += int(sum(1 for s in batch["status"] if s == STATUS_OK))
    return time.perf_counter() - t0, done


def _vector_rows(cfg) -> int:
    cfg.search.consistency = "Strong"  # count what every writer wrote
    cat = Catalog(cfg, embedder=FrameDim(FRAME_DIM))
    got = sum(cat.vectors.count().values())
    cat.vectors.close()
    return got


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--batch", type=int, default=20, help="pipeline.write_batch")
    ap.add_argument("--writers", type=int, default=2, help="pipeline.write_concurrency of the workers path")
    ap.add_argument("--frames", type=int, default=60, help="seconds (frames at 1 fps) per synthetic video")
    ap.add_argument("--milvus-uri", default="")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    server = None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        uri = a.milvus_uri
        if not uri:
            from tests.milvus_harness import MilvusHarness

            server = MilvusHarness(root / "milvus")
            uri = server.start()
        try:
            rows = _rows(a.videos, a.frames)
            cfgs = {name: _cfg(root, uri, name, a.batch, a.writers) for name in ("driver", "workers")}
            ensure_ray(cfgs["driver"])
            out = {"videos": a.videos, "frames_per_video": a.frames, "write_batch": a.batch,
                   "writers": a.writers, "milvus": uri}
            for name, fn in (("driver", run_driver), ("workers", run_workers)):
                secs, done = fn(rows, cfgs[name])
                assert done == a.videos, (name, done)
                vrows = _vector_rows(cfgs[name])
                out[name] = {"seconds": secs, "videos_per_s": done / secs, "vector_rows": vrows,
                             "vector_rows_per_s": vrows / secs}
                print(f"{name:8s} {done} videos in {secs:7.2f} s: {done / secs:8.1f} videos/s, "
                      f"{vrows / secs:9.0f} vector rows/s ({vrows} rows)", flush=True)
            out["ratio_workers_over_driver"] = out["workers"]["videos_per_s"] / out["driver"]["videos_per_s"]
            print(f"workers/driver x{out['ratio_workers_over_driver']:.2f} "
                  f"({a.writers} writer actors, write_batch {a.batch})")
            if a.json:
                Path(a.json).write_text(json.dumps(out, indent=2))
        finally:
            if server is not None:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
