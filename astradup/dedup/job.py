"""The library self-join: every indexed video searched against the library, as a distributed Ray job.

Used by ``jobs/dedup.py`` (``ray job submit``), ``astradup dedup``, ``astradup report``, the demo and
the service's review queue. Nothing here runs an all-pairs scan inside a request: the job writes its
pairs to disk, and every reader reads them.

The job (``run_job``)::

    ok status rows -> ids not yet joined -> batches of ids (a Ray Data dataset)
      -> (dedup.knn local) the driver refreshes the local KNN index: every Milvus vector read into
         a faiss index on disk the first time, only new videos' afterwards (dedup/local_knn.py)
      -> map_batches(Joiner): each actor opens the catalog (and that index); per batch one KNN
         request per modality for all its videos' rows (``Searcher.join_indexed``,
         match/selfjoin.py), then each video's candidates scored as ``astradup search`` scores
         them; keeps the labelled matches
      -> the driver writes one Parquet part per finished batch + the manifest

On disk, under ``<data_dir>/dedup/``::

    parts/<batch>.parquet   the pairs one batch of query videos found (one row per match found)
    manifest.jsonl          finished batches: their ids and part; a line appended after each part

* **Resumable**: a part and its manifest entry are written (temp file + rename) when its batch has
  finished; a job killed halfway leaves finished batches in the manifest, and the re-run joins only
  the ids that are in none of them.
* **Incremental**: after a backfill, the ids with an ok status that no finished batch holds are the
  new videos; only they are searched, each against the *whole* library. Assumption: search is
  symmetric enough that a pair (old, new) is found by searching the new video (the KNN runs from
  the new video's frames and audio windows over every indexed vector, and the scoring of a pair is
  the same evidence from either side), so the old videos need not be searched again. A pair is kept
  in the direction with the higher fused score when both directions found it.
* **Deleted videos**: their pairs are dropped when reading (only ids whose latest status is ok count).
* **Verdicts**: a pair rejected in ``reviews.sqlite`` is never reported and a confirmed one is marked
  (``astradup.reviews.Verdicts``, applied when reading, so a verdict takes effect without re-running
  the job).
* **Milvus Lite** allows one process per ``.db`` file: with a Lite URI the join runs in a single
  actor (concurrency 1), and the calling process must not hold the file itself (``run_job`` with a
  ``searcher`` runs the same batches in the caller instead, for a process that already holds it);
  with a Milvus server URI, ``concurrency`` actors (default: one per CPU) search in parallel.
* **Progress**: one log line per finished batch (the job log, the dashboard's Jobs page), the
  gauges ``astradup_dedup_batches_done`` / ``astradup_dedup_batches_total``, and ``tick(done, total)``
  for a caller's progress bar (astradup/progress.py).

The parts and manifest are ``astradup.dedup.store``'s, a pair row ``astradup.dedup.pairs``'; what
readers get from them (groups, partial copies, the review queue) is ``astradup.dedup.results``'.
Groups are connected components of the pairs at or above a label (``astradup.match.groups``: a
union-find over integer ids in numpy arrays, millions of pairs).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from astradup import telemetry
from astradup.config import Config
from astradup.dedup import local_knn
from astradup.dedup.local_knn import LocalKnn
from astradup.dedup.pairs import match_to_row
from astradup.dedup.store import Manifest, dedup_dir, plan_batches, write_part
from astradup.logs import get_logger
from astradup.progress import Tick
from astradup.records import STATUS_OK
from astradup.uris import is_lite_uri

log = get_logger(__name__)

DEFAULT_BATCH = 50  # query videos per batch (one Parquet part, one manifest entry)


def live_ids(shards) -> dict[str, str]:
    """id -> uri of every video whose latest status is ok."""
    return {v: r.get("uri") or "" for v, r in shards.latest_status().items() if r["status"] == STATUS_OK}


# ---------------------------------------------------------------- the workers


class Joiner:
    """One batch of query ids -> the pairs their searches found (labelled, or with a copied segment).

    A Ray Data callable class: each actor opens the catalog once (on Milvus Lite one actor only);
    also called in-process with a ``searcher`` the caller already holds."""

    def __init__(self, cfg: Config, searcher=None, knn_dir: str = "") -> None:
        from astradup.search import Searcher

        if searcher is None:
            from astradup.logs import setup_logging

            setup_logging(cfg.log)
        self.searcher = searcher or Searcher(cfg)
        # dedup.knn local: the index the driver refreshed (dedup/local_knn.py) answers the KNN
        vs = self.searcher.catalog.vectors
        self.knn = LocalKnn.open(Path(knn_dir), vs.projection, cfg.dedup.nprobe, vs.merge_rows) if knn_dir else None

    def join(self, ids: list[str]) -> list[dict[str, Any]]:
        feats = self.searcher.catalog.shards.load_features(ids)
        queries = {vid: feats[vid] for vid in ids if vid in feats}  # one deleted since planning is gone
        found = self.searcher.join_indexed(queries, knn=self.knn)
        return [match_to_row(vid, m) for vid in ids for m in found.get(vid, ())]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names, out = [], []
        for name, ids_json in zip(batch["batch"], batch["ids"]):
            t0 = time.perf_counter()
            rows = self.join(json.loads(ids_json))
            log.info("dedup batch joined", extra={"stage": "dedup", "duration_s": time.perf_counter() - t0})
            names.append(name)
            out.append(json.dumps(rows))
        return {"batch": np.asarray(names, dtype=object), "ids": batch["ids"], "rows": np.asarray(out, dtype=object)}


# ---------------------------------------------------------------- the job driver


@dataclass
class JobSummary:
    live: int
    joined_before: int
    searched: list[str]  # ids searched by this run
    batches_total: int
    batches_done: int
    pairs_written: int
    wall_seconds: float

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["searched"] = len(self.searched)
        return d


def _is_lite(cfg: Config) -> bool:
    return is_lite_uri(cfg.resolved_milvus_uri)


def run_job(cfg: Config, batch_size: int = DEFAULT_BATCH, concurrency: int = 0, searcher=None,
            progress: Callable[[str], None] | None = None, tick: Tick | None = None) -> JobSummary:
    """Join every ok video not in the manifest against the library; write parts + manifest.

    ``searcher``: run the batches in this process with it (a caller that already holds a Milvus
    Lite file), else on Ray Data actors (``concurrency`` of them; 1 on Lite; 0 = one per CPU).
    ``tick(videos joined, videos to join)`` when the plan is made and after each batch is on disk.
    """
    from astradup.catalog import Catalog

    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    t0 = time.time()
    say = progress or (lambda msg: log.info(msg))
    root = dedup_dir(cfg)
    root.mkdir(parents=True, exist_ok=True)
    catalog = searcher.catalog if searcher is not None else Catalog(cfg)
    live = live_ids(catalog.shards)
    man = Manifest.load(root)
    joined = man.joined()
    plan = plan_batches(set(live) - joined, batch_size)
    summary = JobSummary(len(live), len(joined & set(live)), [], len(plan), 0, 0, 0.0)
    if not plan:
        say(f"dedup: nothing to join ({len(live)} indexed videos, all joined)")
        summary.wall_seconds = time.time() - t0
        return summary
    say(f"dedup: {sum(len(c) for _, c in plan)} of {len(live)} indexed videos to join against the library, "
        f"{len(plan)} batch(es) of up to {batch_size}")
    telemetry.set_gauge(telemetry.DEDUP_BATCHES_TOTAL, len(plan))
    telemetry.set_gauge(telemetry.DEDUP_BATCHES_DONE, 0)
    knn_dir = ""
    if cfg.dedup.knn == "local":
        knn_dir = str(local_knn.refresh(catalog.vectors, root / "knn", set(live), say))
        if searcher is None:
            catalog.close_vectors()  # a Milvus Lite file is then free for the join actor
    ids_of = dict(plan)
    n_todo = sum(len(c) for _, c in plan)
    if tick is not None:
        tick(0, n_todo)

    def finished(name: str, rows: list[dict[str, Any]]) -> None:
        rel = write_part(root, name, rows)
        # after the part: a batch in the manifest always has its part on disk
        man.append(root, name, {"ids": ids_of[name], "part": rel, "pairs": len(rows), "at": time.time()})
        summary.batches_done += 1
        summary.pairs_written += len(rows)
        summary.searched += ids_of[name]
        telemetry.set_gauge(telemetry.DEDUP_BATCHES_DONE, summary.batches_done)
        say(f"dedup: batch {summary.batches_done}/{len(plan)} {name}: {len(ids_of[name])} videos searched, "
            f"{len(rows)} pair(s) ({time.time() - t0:.1f} s)")
        if tick is not None:
            tick(len(summary.searched), n_todo)

    if searcher is not None:
        joiner = Joiner(cfg, searcher, knn_dir)
        for name, ids in plan:
            finished(name, joiner.join(ids))
    else:
        for name, rows in _ray_batches(cfg, plan, concurrency, knn_dir):
            finished(name, rows)
    summary.wall_seconds = time.time() - t0
    return summary


def _ray_batches(cfg: Config, plan: list[tuple[str, list[str]]], concurrency: int, knn_dir: str = ""
                 ) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    import ray
    from ray.data import ActorPoolStrategy

    from astradup.pipeline import ensure_ray

    ensure_ray(cfg)
    if is_lite_uri(cfg.resolved_milvus_uri):
        n = 1  # Milvus Lite: one process per .db file
    else:
        n = concurrency or max(1, int(ray.cluster_resources().get("CPU", 1)))
    n = max(1, min(n, len(plan)))
    ds = ray.data.from_items([{"batch": name, "ids": json.dumps(ids)} for name, ids in plan],
                             override_num_blocks=len(plan))
    ds = ds.map_batches(Joiner, fn_constructor_args=(cfg, None, knn_dir), batch_size=1,
                        compute=ActorPoolStrategy(size=n),
                        num_cpus=1, batch_format="numpy")
    it = ds.iter_rows()
    try:
        for row in it:
            yield str(row["batch"]), json.loads(row["rows"])
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()  # a driver that stops early (killed, a hook raised) stops the actors now
        if is_lite_uri(cfg.resolved_milvus_uri):
            _wait_lite_free(cfg.resolved_milvus_uri)


LITE_RELEASE_WAIT_S = 60.0


def _wait_lite_free(uri: str, timeout: float = LITE_RELEASE_WAIT_S) -> bool:
    """After the job: wait until the actor that held the Milvus Lite file has exited (Ray kills a
    finished pool's actors asynchronously), so whatever opens the file next (the caller, a search
    replica) finds it free. Milvus Lite holds an advisory flock on ``<file>.db/LOCK``; taking and
    dropping it on a descriptor of our own tells, without disturbing a holder."""
    import fcntl

    lock = os.path.join(os.path.abspath(uri), "LOCK")
    if not os.path.exists(lock):
        return True
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True
        except OSError:
            if time.monotonic() > deadline:
                log.warning("the Milvus Lite file %s is still held %.0f s after the dedup job", uri, timeout)
                return False
        finally:
            os.close(fd)
        time.sleep(0.2)


def stale(cfg: Config, shards) -> bool:
    """Whether some ok video is in no finished batch (never joined, or a job was killed)."""
    return bool(set(live_ids(shards)) - Manifest.load(dedup_dir(cfg)).joined())


def ensure_joined(cfg: Config, searcher=None, progress: Callable[[str], None] | None = None,
                  tick: Tick | None = None) -> None:
    """Run the job when its output is missing or stale (on a local Ray unless a searcher is given)."""
    from astradup.catalog import Catalog

    shards = searcher.catalog.shards if searcher is not None else Catalog(cfg).shards
    if stale(cfg, shards):
        run_job(cfg, searcher=searcher, progress=progress, tick=tick)
