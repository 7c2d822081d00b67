"""The Ray Data graph that indexes videos: refs -> decode (+pHash, audio) -> embedder pool -> sinks.

This module is the driver: it lists the sources, builds the graph of the stages (decode_stage.py,
embed_stage.py placed by features/placement.py, write_stage.py), and counts and writes what comes
back. One machine or a cluster runs the same graph (``jobs/backfill.py`` is the cluster entry point).
Frames cross the object store once (decode -> embedder); PCM never does, which is why pHash and
audio run in the decode task instead of pools of their own. The streaming executor keeps only
a bounded number of blocks in flight, so memory follows the concurrency, not the corpus.

Who writes the Parquet shards and Milvus (``pipeline.writers``, see ``resolved_writers``):

* driver (Milvus Lite, always): the driver is the only writer, which keeps a Lite file safe (it
  wants one writing process). Batches stream back to it and it writes each one.
* workers (a Milvus server, which takes many writers): the graph's last stage is a pool of
  writer actors (``write_stage.WriteStage``, ``pipeline.write_concurrency`` of them); each keeps its own
  Catalog (Milvus client + ShardStore) for every batch it gets and returns only a small summary
  per video (id, uri, status, error, media seconds, write seconds). The driver adds the summaries
  into the same IndexReport and writes nothing. An actor pool rather than a ``ray.data.Datasink``:
  a Datasink's write tasks would open a Milvus client and a shard index per task, and hand their
  results to the driver only when the whole write ends (no progress, no per-batch counters).

Either way one batch is written in one order, by ``Catalog.write``: vectors first, then the shard
whose status row says "ok", so a job (or a writer) killed in between re-does that batch (upsert =>
no duplicate vectors) instead of believing it done. Shard names are unique and published with
O_EXCL, so several writers never overwrite each other. The one thing only the driver path
guarantees is that two files with the same bytes in one run are written once: two writer actors
may each write such a video (the same vectors, upserted twice; two status rows, the latest wins);
the report still counts it once.
"""
from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from astradup import telemetry
from astradup.config import Config, check_pipeline, resolved_writers
from astradup.decode_stage import STATUS_SKIPPED, batch_rows, decode_batch
from astradup.embed_stage import EmbedStage
from astradup.features.placement import EmbedPlan, plan_embedder
from astradup.io.sources import list_videos
from astradup.logs import get_logger
from astradup.records import STATUS_FAILED, STATUS_OK, VideoFeatures
from astradup.write_stage import add_writers

log = get_logger(__name__)


def ensure_ray(cfg: Config | None = None) -> None:
    """Join RAY_ADDRESS when set (a `ray job submit` or a cluster), else start a local Ray."""
    from astradup.raystart import ensure_ray as _ensure

    if cfg is None:
        _ensure()
    else:
        _ensure(cfg.pipeline.dashboard, cfg.pipeline.metrics_export_port, cfg.pipeline.ray_host)


def _count_written(report: IndexReport, before: tuple[int, int, int, float], remaining: int) -> None:
    """Counters for the batch just written (the report's growth since ``before``) and the queue left."""
    indexed, failed, skipped, media = before
    telemetry.inc(telemetry.VIDEOS_PROCESSED, report.indexed - indexed, status=STATUS_OK)
    telemetry.inc(telemetry.VIDEOS_PROCESSED, len(report.failed) - failed, status=STATUS_FAILED)
    telemetry.inc(telemetry.VIDEOS_PROCESSED, report.skipped - skipped, status=STATUS_SKIPPED)
    telemetry.inc(telemetry.MEDIA_SECONDS, report.media_seconds - media)
    telemetry.set_gauge(telemetry.BACKFILL_QUEUE, max(remaining, 0))


@dataclass
class IndexReport:
    listed: int = 0
    indexed: int = 0
    skipped: int = 0  # already indexed: same (uri, size) as an ok status row, or same bytes
    skipped_unread: int = 0  # of ``skipped``, those never read at all (matched on (uri, size))
    failed: list[tuple[str, str]] = field(default_factory=list)  # (uri, reason)
    media_seconds: float = 0.0
    wall_seconds: float = 0.0
    cpus: float = 0.0  # CPUs of the Ray cluster while the job ran
    gpus: float = 0.0
    embed_device: str = ""  # where the frame embedder pool ran: "cpu" or "gpu"
    writers: str = ""  # who wrote the shards and vectors: "driver" or "workers" (pipeline.writers)
    write_seconds: float = 0.0  # time spent writing batches, summed over the writers
    video_ids: list[str] = field(default_factory=list)

    @property
    def x_realtime(self) -> float:
        return self.media_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def x_realtime_per_cpu(self) -> float:
        return self.x_realtime / self.cpus if self.cpus > 0 else 0.0

    def summary(self) -> str:
        lines = [f"listed {self.listed}, indexed {self.indexed}, already indexed {self.skipped} "
                 f"({self.skipped_unread} not even read), failed {len(self.failed)}; "
                 f"{self.media_seconds / 3600:.3f} h of media in {self.wall_seconds:.1f} s "
                 f"({self.x_realtime:.1f}x realtime"
                 + (f", {self.x_realtime_per_cpu:.2f}x per CPU core of {self.cpus:g}" if self.cpus else "")
                 + (f", embedder on {self.embed_device}" if self.embed_device else "")
                 + (f", written by the {self.writers} in {self.write_seconds:.1f} s" if self.writers else "") + ")"]
        lines += [f"  FAILED {uri}: {reason}" for uri, reason in self.failed]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The figures a dashboard or a benchmark wants, without the per-video id list."""
        return {"listed": self.listed, "indexed": self.indexed, "skipped": self.skipped,
                "skipped_unread": self.skipped_unread,
                "failed": [{"uri": u, "reason": r} for u, r in self.failed],
                "media_hours": self.media_seconds / 3600, "wall_seconds": self.wall_seconds,
                "x_realtime": self.x_realtime, "cpus": self.cpus, "gpus": self.gpus,
                "x_realtime_per_cpu": self.x_realtime_per_cpu, "embed_device": self.embed_device,
                "writers": self.writers, "write_seconds": self.write_seconds}

def decode_pool_size(cfg: Config) -> int | None:
    """``decode_concurrency`` caps the decode tasks; 0 leaves them to Ray (one per free CPU)."""
    n = cfg.pipeline.decode_concurrency
    return n if n > 0 else None


def _blocks(n: int, max_blocks: int = 4096) -> int:
    """One video per block up to a few thousand, so the slowest video holds up only itself; beyond
    that, a few videos a block keeps the scheduler's bookkeeping small."""
    return max(1, min(n, max_blocks))


def build_dataset(items: list[tuple[str, int]], cfg: Config, skip_ids: frozenset[str],
                  plan: EmbedPlan | None = None):
    import ray.data
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    plan = plan or plan_embedder(cfg, {})
    ds = ray.data.from_items([{"uri": u, "size": s} for u, s in items], override_num_blocks=_blocks(len(items)))
    ds = ds.map_batches(decode_batch, batch_size=1, num_cpus=1,
                        fn_kwargs={"cfg": cfg, "skip_ids": skip_ids},
                        compute=TaskPoolStrategy(size=decode_pool_size(cfg)))
    return ds.map_batches(EmbedStage, batch_size=4, fn_constructor_kwargs={"cfg": cfg},
                          compute=ActorPoolStrategy(min_size=plan.min_size, max_size=plan.max_size),
                          num_cpus=plan.num_cpus, num_gpus=plan.num_gpus or None)

def _tally(report: "IndexReport", seen: set[str], vid: str, uri: str, status: str, err: str,
           duration: float) -> bool:
    """Count one video into the report; True when it is new (to be written: first ok, or failed)."""
    if status == STATUS_SKIPPED or (status == STATUS_OK and vid in seen):
        report.skipped += 1
        return False
    if status == STATUS_OK:
        seen.add(vid)
        report.indexed += 1
        report.video_ids.append(vid)
        report.media_seconds += duration
    else:
        report.failed.append((uri, err))
    return True


def done_listing(status: dict[str, dict]) -> tuple[frozenset[str], set[tuple[str, int]]]:
    """(ids whose latest status is ok, (uri, size) of those rows): what a re-run may skip."""
    ok = {vid: row for vid, row in status.items() if row["status"] == STATUS_OK}
    return frozenset(ok), {(row["uri"], int(row["size"])) for row in ok.values()
                           if row.get("uri") and row.get("size") is not None}


def index(inputs: list[str], cfg: Config, catalog=None, progress: Callable[[str], None] | None = None,
          trust_listing: bool = True, tick: Callable[[int, int], None] | None = None) -> IndexReport:
    """Index files/folders/s3 prefixes; already indexed content is skipped.

    A file whose (uri, size) matches an ok status row is skipped before it is read: a re-run over
    S3 then costs a listing, not a download of the corpus. ``trust_listing=False`` reads and hashes
    every file instead (for stores where an object can be replaced by another of equal size);
    the content-hash check still catches the same bytes under a new name either way.
    ``tick(files done, files listed)`` follows the driver: after the listing and each written batch.
    """
    from astradup.catalog import Catalog

    check_pipeline(cfg)  # the config may have been changed since it was loaded (jobs/backfill does)
    t0 = time.time()
    catalog = catalog or Catalog(cfg)
    listed = list_videos(inputs, cfg.s3_endpoint)
    report = IndexReport(listed=len(listed))
    # Ids whose features only a quarantined (damaged) shard held are not done, whatever their status
    # row says: leaving them out of the listing makes this run index them again.
    lost = catalog.shards.lost_ids()
    skip, done_refs = done_listing({v: r for v, r in catalog.shards.latest_status().items() if v not in lost})
    items = [x for x in listed if not (trust_listing and x in done_refs)]
    report.skipped = report.skipped_unread = len(listed) - len(items)
    if progress and report.skipped:
        progress(f"{report.skipped} of {len(listed)} listed files are already indexed (same uri and size)")
    if tick:
        tick(report.skipped, len(listed))
    if not items:
        report.wall_seconds = time.time() - t0
        return report
    ensure_ray(cfg)
    import ray

    telemetry.inc(telemetry.VIDEOS_PROCESSED, report.skipped_unread, status=STATUS_SKIPPED)
    telemetry.set_gauge(telemetry.BACKFILL_QUEUE, len(items))
    res = ray.cluster_resources()
    report.cpus, report.gpus = float(res.get("CPU", 0.0)), float(res.get("GPU", 0.0))
    plan = plan_embedder(cfg, res)
    report.embed_device = plan.device
    ds = build_dataset(items, cfg, skip, plan)
    writers = report.writers = resolved_writers(cfg)
    seen: set[str] = set(skip)
    if writers == "workers":
        batches = add_writers(ds, cfg).iter_batches(batch_size=None, batch_format="numpy")
    else:
        batches = ds.iter_batches(batch_size=cfg.pipeline.write_batch, batch_format="numpy")
    for batch in batches:
        before = (report.indexed, len(report.failed), report.skipped, report.media_seconds)
        if writers == "workers":  # written already: the summaries are only counted
            n_batch = 0
            for vid, uri, status, err, dur in zip(batch["video_id"], batch["uri"], batch["status"],
                                                  batch["error"], batch["duration"]):
                n_batch += _tally(report, seen, vid, uri, status, err, float(dur))
            report.write_seconds += float(np.sum(batch["write_s"]))
        else:
            to_write: list[VideoFeatures] = []
            for vid, uri, status, err, payload in batch_rows(batch):
                if status == STATUS_SKIPPED or (status == STATUS_OK and vid in seen):
                    report.skipped += 1
                    continue
                feats, _ = pickle.loads(payload)
                _tally(report, seen, vid, uri, status, err, float(feats.meta.get("duration") or 0.0))
                to_write.append(feats)
            t_write = time.perf_counter()
            catalog.write(to_write)
            write_s = time.perf_counter() - t_write
            report.write_seconds += write_s
            log.info("wrote batch", extra={"stage": "write", "duration_s": write_s, "videos": len(to_write)})
            n_batch = len(to_write)
        written = report.indexed + len(report.failed) + report.skipped - report.skipped_unread
        _count_written(report, before, len(items) - written)
        if tick:
            tick(report.indexed + len(report.failed) + report.skipped, len(listed))
        if progress:
            el = time.time() - t0
            progress(f"wrote {n_batch} records ({report.indexed} indexed, {report.skipped} already "
                     f"indexed, {len(report.failed)} failed of {len(listed)}; "
                     f"{report.media_seconds / max(el, 1e-9):.1f}x realtime so far)")
    report.wall_seconds = time.time() - t0
    telemetry.set_gauge(telemetry.BACKFILL_QUEUE, 0)
    # An autoscaling cluster may have grown while the job ran: per-core figures use the larger count.
    report.cpus = max(report.cpus, float(ray.cluster_resources().get("CPU", 0.0)))
    return report
