"""The writer actors of the indexing graph's workers path: batches of features -> shards and vectors.

Used when ``pipeline.writers`` is ``workers`` (a Milvus server takes many writers; see
astradup/pipeline.py for the driver path). Each actor writes its batches with ``Catalog.write``
(vectors first, then the shard with the status rows) and returns one small summary row per video
for the driver to count.
"""
from __future__ import annotations

import pickle
import time

import numpy as np

from astradup.config import Config
from astradup.decode_stage import STATUS_SKIPPED, batch_rows
from astradup.logs import get_logger, setup_logging
from astradup.records import STATUS_OK, VideoFeatures

log = get_logger("astradup.pipeline")  # the indexing pipeline's records keep one logger name (dashboards filter on it)


def add_writers(ds, cfg: Config):
    """The writing stage of the workers path: ``pipeline.write_concurrency`` WriteStage actors,
    ``pipeline.write_batch`` videos per call (one shard, one upsert). They reserve no CPU: their
    work is mostly waiting on Milvus and storage, and a reserved core would idle a decoder."""
    from ray.data import ActorPoolStrategy

    n = max(1, cfg.pipeline.write_concurrency)
    return ds.map_batches(WriteStage, batch_size=cfg.pipeline.write_batch, fn_constructor_kwargs={"cfg": cfg},
                          compute=ActorPoolStrategy(min_size=1, max_size=n), num_cpus=0, batch_format="numpy")


class FrameDim:
    """What a writer's Catalog needs of the embedder: the frame vector size (read off the features
    it writes), so a writer actor never loads the model."""

    def __init__(self, dim: int) -> None:
        self.dim = dim


def new_rows(rows, seen: set[str]):
    """(video_id, uri, status, error, payload) rows -> [(row, features or None)]: features for the
    rows to write (first ok sight of an id, failures), None for the ones to skip. Adds to ``seen``."""
    out = []
    for row in rows:
        vid, _uri, status, _err, payload = row
        if status == STATUS_SKIPPED or (status == STATUS_OK and vid in seen):
            out.append((row, None))
            continue
        feats, _ = pickle.loads(payload)
        if status == STATUS_OK:
            seen.add(vid)
        out.append((row, feats))
    return out


class WriteStage:
    """A writer actor of the workers path: writes the batches it gets (``Catalog.write``: vectors,
    then the shard with the status rows) and returns one small summary row per video."""

    def __init__(self, cfg: Config) -> None:
        setup_logging(cfg.log)
        self.cfg = cfg
        self.catalog = None
        self.seen: set[str] = set()  # ids this actor wrote ok (other actors' are the driver's to count)

    def _catalog(self, feats: list[VideoFeatures]):
        if self.catalog is None:
            from astradup.catalog import Catalog

            dim = next((int(np.asarray(f.embeddings).shape[1]) for f in feats
                        if f.status == STATUS_OK and len(f.embeddings)), None)
            self.catalog = Catalog(self.cfg, embedder=FrameDim(dim) if dim is not None else None)
        return self.catalog

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = new_rows(list(batch_rows(batch)), self.seen)
        to_write = [f for _, f in rows if f is not None]
        t_write = time.perf_counter()
        if to_write:
            self._catalog(to_write).write(to_write)
        write_s = time.perf_counter() - t_write
        log.info("wrote batch", extra={"stage": "write", "duration_s": write_s, "videos": len(to_write),
                                       "writer": "worker"})
        out = {"video_id": [], "uri": [], "status": [], "error": [], "duration": [], "write_s": []}
        for (vid, uri, status, err, _), f in rows:
            out["video_id"].append(vid)
            out["uri"].append(uri)
            out["status"].append(STATUS_SKIPPED if f is None else status)
            out["error"].append(err)
            out["duration"].append(float(f.meta.get("duration") or 0.0) if f is not None else 0.0)
            out["write_s"].append(write_s / len(rows))  # the batch's time, shared: the rows sum to it
        return {"video_id": np.array(out["video_id"], dtype=object), "uri": np.array(out["uri"], dtype=object),
                "status": np.array(out["status"], dtype=object), "error": np.array(out["error"], dtype=object),
                "duration": np.array(out["duration"], dtype=np.float64),
                "write_s": np.array(out["write_s"], dtype=np.float64)}
