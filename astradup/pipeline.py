"""The Ray Data graph that indexes videos: refs -> decode (+pHash, audio) -> embedder pool -> sinks.

One machine or a cluster runs the same graph (``jobs/backfill.py`` is the cluster entry point).
Frames cross the object store once (decode -> embedder); PCM never does, which is why pHash and
audio run in the decode task instead of pools of their own. The streaming executor keeps only
a bounded number of blocks in flight, so memory follows the concurrency, not the corpus.

Who writes the Parquet shards and Milvus (``pipeline.writers``, see ``resolved_writers``):

* driver (Milvus Lite, always): the driver is the only writer, which keeps a Lite file safe (it
  wants one writing process). Batches stream back to it and it writes each one.
* workers (a Milvus server, which takes many writers): the graph's last stage is a pool of
  writer actors (``WriteStage``, ``pipeline.write_concurrency`` of them); each keeps its own
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

import hashlib
import os
import pickle
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from astradup import telemetry
from astradup.config import Config, check_pipeline, resolved_writers
from astradup.errors import MediaError
from astradup.io.sources import list_videos, local_copy
from astradup.logs import get_logger, setup_logging
from astradup.records import STATUS_FAILED, STATUS_OK, VideoFeatures, VideoRef

STATUS_SKIPPED = "skipped"
log = get_logger(__name__)


def ensure_ray(cfg: Config | None = None) -> None:
    """Join RAY_ADDRESS when set (a `ray job submit` or a cluster), else start a local Ray."""
    from astradup.raystart import ensure_ray as _ensure

    if cfg is None:
        _ensure()
    else:
        _ensure(cfg.pipeline.dashboard, cfg.pipeline.metrics_export_port, cfg.pipeline.ray_host)


def _fallback_id(uri: str) -> str:
    """An id for a file whose bytes cannot be read at all (so its failure can still be recorded)."""
    return "u" + hashlib.blake2b(uri.encode(), digest_size=16).hexdigest()[1:]


def decode_one(uri: str, size: int, cfg: Config, skip_ids: frozenset[str]) -> dict:
    """Decode one file and compute its CPU features; never raises (a failure is a record).

    A long file (more than decode.STREAM_FRAMES sampled frames) is decoded as a stream and
    embedded here, chunk by chunk, with this worker's cached model: its payload then carries
    finished features and no frames, which EmbedStage passes through (see streamed_features).
    """
    from astradup.features.extract import cpu_features, streamed_features
    from astradup.io.probe import probe
    from astradup.io.decode import decode_video
    from astradup.io.sampling import should_stream
    from astradup.io.ids import content_id, head_hash

    video_id = ""
    try:
        with local_copy(uri, cfg.s3_endpoint) as path:
            video_id = content_id(path)
            if video_id in skip_ids:
                return {"video_id": video_id, "uri": uri, "status": STATUS_SKIPPED, "error": "",
                        "payload": b""}
            ref = VideoRef(video_id, uri, size)
            meta = probe(path)
            # Kept with the features (meta_json): the service checks it before serving the file.
            meta["head_hash"] = head_hash(path)
            if should_stream(meta, cfg.decode):
                from astradup.features.embedder import get_embedder

                with telemetry.timed(telemetry.INDEX_STAGE_LATENCY, stage="decode"):
                    feats = streamed_features(path, ref, cfg, get_embedder(cfg.embedder), meta=meta)
                return {"video_id": video_id, "uri": uri, "status": STATUS_OK, "error": "",
                        "payload": pickle.dumps((feats, None), protocol=5)}
            with telemetry.timed(telemetry.INDEX_STAGE_LATENCY, stage="decode"):
                dec = decode_video(path, ref, cfg.decode, meta=meta)
            with telemetry.timed(telemetry.INDEX_STAGE_LATENCY, stage="features"):
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


def _decode_logged(uri: str, size: int, cfg: Config, skip_ids: frozenset[str]) -> dict:
    """``decode_one`` plus its log line: one per video, with how long it took and how it ended."""
    t0 = time.perf_counter()
    row = decode_one(uri, size, cfg, skip_ids)
    fields = {"video_id": row["video_id"], "uri": uri, "stage": "decode", "status": row["status"],
              "duration_s": time.perf_counter() - t0}
    if row["status"] == STATUS_FAILED:
        log.warning("decode failed", extra={**fields, "error": row["error"]})
    else:
        log.info("decoded", extra=fields)
    return row


def decode_batch(batch: dict[str, np.ndarray], cfg: Config, skip_ids: frozenset[str]) -> dict:
    setup_logging(cfg.log)  # a Ray worker never runs the CLI's main: its logging is set up here
    rows = [_decode_logged(str(u), int(s), cfg, skip_ids) for u, s in zip(batch["uri"], batch["size"])]
    return {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]} if rows else batch


class EmbedStage:
    """A callable class, so Ray Data loads the model once per actor and reuses it for every batch.

    The frames of every video in the batch go through one ``embed`` call: a GPU is only busy
    when its batches are full, and one short video alone rarely fills one.
    """

    def __init__(self, cfg: Config) -> None:
        from astradup.features.embedder import get_embedder

        setup_logging(cfg.log)  # this actor's process has no logging of ours until now
        self.embedder = get_embedder(cfg.embedder)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import dataclasses

        payloads = list(batch["payload"])
        todo = [(i, *pickle.loads(p)) for i, (st, p) in enumerate(zip(batch["status"], payloads))
                if st == STATUS_OK]
        todo = [(i, f, fr) for i, f, fr in todo if fr is not None]
        if todo:
            frames = np.concatenate([fr for _, _, fr in todo]) if len(todo) > 1 else todo[0][2]
            t_embed = time.perf_counter()
            emb = self.embedder.embed(frames).astype(np.float32) if len(frames) else \
                np.zeros((0, self.embedder.dim), np.float32)
            batch_s = time.perf_counter() - t_embed
            start = 0
            for i, f, fr in todo:
                part = emb[start:start + len(fr)]
                start += len(fr)
                _embedded(f.video_id, len(fr), len(frames), batch_s, len(todo))
                payloads[i] = pickle.dumps((dataclasses.replace(f, embeddings=part), None), protocol=5)
        out = dict(batch)
        out["payload"] = np.array(payloads, dtype=object)
        return out


def _embedded(video_id: str, n_frames: int, batch_frames: int, batch_s: float, batch_videos: int) -> None:
    """Metric and log line for one video of an embed batch. The batch's videos share one embed
    call, whose cost grows with the frame count, so a video's share is by its frames."""
    share = batch_s * n_frames / batch_frames if batch_frames else 0.0
    telemetry.observe(telemetry.INDEX_STAGE_LATENCY, share, stage="embed")
    log.info("embedded", extra={"video_id": video_id, "stage": "embed", "status": STATUS_OK, "duration_s": share,
                                "frames": n_frames, "batch_s": round(batch_s, 4), "batch_videos": batch_videos})


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


@dataclass(frozen=True)
class EmbedPlan:
    """How the embedder pool is placed: a pure decision from the config and the cluster's resources."""

    device: str  # "gpu" | "cpu"
    num_gpus: float  # per actor
    num_cpus: float  # per actor
    min_size: int
    max_size: int


def plan_embedder(cfg: Config, resources: dict[str, float]) -> EmbedPlan:
    """GPU actors when the cluster has GPUs (and the embedder is not pinned to the CPU), else CPU ones.

    On GPUs the pool may grow to one actor per ``embed_num_gpus`` share (1 GPU when unset) of
    the GPUs present; ``embed_concurrency`` actors start at once. CPU actors are a fixed pool of
    ``embed_concurrency``, since every CPU they hold is one a decoder cannot use.
    """
    gpus = float(resources.get("GPU", 0.0))
    n = max(1, cfg.pipeline.embed_concurrency)
    if gpus > 0 and cfg.embedder.device != "cpu":
        # More GPUs per actor than the cluster has would leave the pool waiting forever.
        per = min(cfg.pipeline.embed_num_gpus if cfg.pipeline.embed_num_gpus > 0 else 1.0, gpus)
        most = max(1, int(gpus // per))
        # The actor's host work (resize, unpickling frames) is light next to decoding; a CPU
        # reserved for it would idle a decoder on the GPU node.
        return EmbedPlan("gpu", per, 0.0, min(n, most), most)
    return EmbedPlan("cpu", 0.0, 1.0, n, n)


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


def add_writers(ds, cfg: Config):
    """The writing stage of the workers path: ``pipeline.write_concurrency`` WriteStage actors,
    ``pipeline.write_batch`` videos per call (one shard, one upsert). They reserve no CPU: their
    work is mostly waiting on Milvus and storage, and a reserved core would idle a decoder."""
    from ray.data import ActorPoolStrategy

    n = max(1, cfg.pipeline.write_concurrency)
    return ds.map_batches(WriteStage, batch_size=cfg.pipeline.write_batch, fn_constructor_kwargs={"cfg": cfg},
                          compute=ActorPoolStrategy(min_size=1, max_size=n), num_cpus=0, batch_format="numpy")


class _FrameDim:
    """What a writer's Catalog needs of the embedder: the frame vector size (read off the features
    it writes), so a writer actor never loads the model."""

    def __init__(self, dim: int) -> None:
        self.dim = dim


def _new_rows(rows, seen: set[str]):
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


def _rows(batch: dict[str, np.ndarray]):
    return zip(batch["video_id"], batch["uri"], batch["status"], batch["error"], batch["payload"])


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
            self.catalog = Catalog(self.cfg, embedder=_FrameDim(dim) if dim is not None else None)
        return self.catalog

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = _new_rows(list(_rows(batch)), self.seen)
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
            for vid, uri, status, err, payload in _rows(batch):
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
