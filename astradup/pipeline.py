"""The Ray Data graph that indexes videos: refs -> decode (+pHash, audio) -> embedder pool -> sinks.

One machine or a cluster runs the same graph (``jobs/backfill.py`` is the cluster entry point).
Frames cross the object store once (decode -> embedder); PCM never does, which is why pHash and
audio run in the decode task instead of pools of their own. The streaming executor keeps only
a bounded number of blocks in flight, so memory follows the concurrency, not the corpus.

The driver is the only writer of Parquet shards and Milvus, which keeps a Milvus Lite file safe
(it wants one writer) and makes the write order explicit: vectors first, then the shard whose
status row says "ok", so a job killed in between re-does that batch (upsert => no duplicate
vectors) instead of believing it done.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from astradup.config import Config
from astradup.errors import MediaError
from astradup.io.sources import list_videos, local_copy
from astradup.records import STATUS_FAILED, STATUS_OK, VideoFeatures, VideoRef

STATUS_SKIPPED = "skipped"


def ensure_ray(cfg: Config | None = None) -> None:
    """Join RAY_ADDRESS when set (a `ray job submit` or a cluster), else start a local Ray."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    addr = os.environ.get("RAY_ADDRESS")
    kwargs = dict(ignore_reinit_error=True, log_to_driver=False)
    if addr:
        ray.init(address=addr, **kwargs)
    else:
        ray.init(include_dashboard=cfg.pipeline.dashboard if cfg else True, **kwargs)


def _fallback_id(uri: str) -> str:
    """An id for a file whose bytes cannot be read at all (so its failure can still be recorded)."""
    return "u" + hashlib.blake2b(uri.encode(), digest_size=16).hexdigest()[1:]


def decode_one(uri: str, size: int, cfg: Config, skip_ids: frozenset[str]) -> dict:
    """Decode one file and compute its CPU features; never raises (a failure is a record)."""
    from astradup.features.extract import cpu_features
    from astradup.io.decode import decode_video
    from astradup.io.ids import content_id

    video_id = ""
    try:
        with local_copy(uri, cfg.s3_endpoint) as path:
            video_id = content_id(path)
            if video_id in skip_ids:
                return {"video_id": video_id, "uri": uri, "status": STATUS_SKIPPED, "error": "",
                        "payload": b""}
            dec = decode_video(path, VideoRef(video_id, uri, size), cfg.decode)
            feats = cpu_features(dec, cfg)
            return {"video_id": video_id, "uri": uri, "status": STATUS_OK, "error": "",
                    "payload": pickle.dumps((feats, dec.frames), protocol=5)}
    except MediaError as e:
        err = e.reason
    except Exception as e:  # a decoder crash on hostile input must not take the pipeline down
        err = f"{type(e).__name__}: {e}"
    video_id = video_id or _fallback_id(uri)
    failed = VideoFeatures.failed(video_id, uri, err, {"size": size})
    return {"video_id": video_id, "uri": uri, "status": STATUS_FAILED, "error": err,
            "payload": pickle.dumps((failed, None), protocol=5)}


def decode_batch(batch: dict[str, np.ndarray], cfg: Config, skip_ids: frozenset[str]) -> dict:
    rows = [decode_one(str(u), int(s), cfg, skip_ids) for u, s in zip(batch["uri"], batch["size"])]
    return {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]} if rows else batch


class EmbedStage:
    """A callable class, so Ray Data loads the model once per actor and reuses it for every batch.

    The frames of every video in the batch go through one ``embed`` call: a GPU is only busy
    when its batches are full, and one short video alone rarely fills one.
    """

    def __init__(self, cfg: Config) -> None:
        from astradup.features.embedder import get_embedder

        self.embedder = get_embedder(cfg.embedder)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import dataclasses

        payloads = list(batch["payload"])
        todo = [(i, *pickle.loads(p)) for i, (st, p) in enumerate(zip(batch["status"], payloads))
                if st == STATUS_OK]
        todo = [(i, f, fr) for i, f, fr in todo if fr is not None]
        if todo:
            frames = np.concatenate([fr for _, _, fr in todo]) if len(todo) > 1 else todo[0][2]
            emb = self.embedder.embed(frames).astype(np.float32) if len(frames) else \
                np.zeros((0, self.embedder.dim), np.float32)
            start = 0
            for i, f, fr in todo:
                part = emb[start:start + len(fr)]
                start += len(fr)
                payloads[i] = pickle.dumps((dataclasses.replace(f, embeddings=part), None), protocol=5)
        out = dict(batch)
        out["payload"] = np.array(payloads, dtype=object)
        return out


@dataclass
class IndexReport:
    listed: int = 0
    indexed: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (uri, reason)
    media_seconds: float = 0.0
    wall_seconds: float = 0.0
    video_ids: list[str] = field(default_factory=list)

    @property
    def x_realtime(self) -> float:
        return self.media_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def summary(self) -> str:
        lines = [f"listed {self.listed}, indexed {self.indexed}, already indexed {self.skipped}, "
                 f"failed {len(self.failed)}; {self.media_seconds / 3600:.3f} h of media in "
                 f"{self.wall_seconds:.1f} s ({self.x_realtime:.1f}x realtime)"]
        lines += [f"  FAILED {uri}: {reason}" for uri, reason in self.failed]
        return "\n".join(lines)


def build_dataset(items: list[tuple[str, int]], cfg: Config, skip_ids: frozenset[str]):
    import ray.data
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    ds = ray.data.from_items([{"uri": u, "size": s} for u, s in items],
                             override_num_blocks=max(1, len(items)))
    ds = ds.map_batches(decode_batch, batch_size=1, num_cpus=1,
                        fn_kwargs={"cfg": cfg, "skip_ids": skip_ids},
                        compute=TaskPoolStrategy(size=max(1, cfg.pipeline.decode_concurrency)))
    return ds.map_batches(EmbedStage, batch_size=4, fn_constructor_kwargs={"cfg": cfg},
                          compute=ActorPoolStrategy(size=max(1, cfg.pipeline.embed_concurrency)),
                          num_cpus=0 if cfg.pipeline.embed_num_gpus > 0 else 1,
                          num_gpus=cfg.pipeline.embed_num_gpus or None)


def index(inputs: list[str], cfg: Config, catalog=None, progress: Callable[[str], None] | None = None
          ) -> IndexReport:
    """Index files/folders/s3 prefixes; already indexed content (same bytes) is skipped."""
    from astradup.catalog import Catalog

    t0 = time.time()
    catalog = catalog or Catalog(cfg)
    items = list_videos(inputs, cfg.s3_endpoint)
    report = IndexReport(listed=len(items))
    if not items:
        report.wall_seconds = time.time() - t0
        return report
    skip = frozenset(vid for vid, row in catalog.shards.latest_status().items() if row["status"] == STATUS_OK)
    ensure_ray(cfg)
    ds = build_dataset(items, cfg, skip)
    seen: set[str] = set(skip)
    for batch in ds.iter_batches(batch_size=cfg.pipeline.write_batch, batch_format="numpy"):
        to_write: list[VideoFeatures] = []
        for vid, uri, status, err, payload in zip(batch["video_id"], batch["uri"], batch["status"],
                                                  batch["error"], batch["payload"]):
            if status == STATUS_SKIPPED or (status == STATUS_OK and vid in seen):
                report.skipped += 1
                continue
            feats, _ = pickle.loads(payload)
            if status == STATUS_OK:
                seen.add(vid)
                report.indexed += 1
                report.video_ids.append(vid)
                report.media_seconds += float(feats.meta.get("duration") or 0.0)
            else:
                report.failed.append((uri, err))
            to_write.append(feats)
        catalog.write(to_write)
        if progress:
            progress(f"wrote {len(to_write)} records ({report.indexed} indexed, {len(report.failed)} failed)")
    report.wall_seconds = time.time() - t0
    return report


def iter_chunks(seq: list, n: int) -> Iterable[list]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]
