"""The library self-join: every indexed video searched against the library, as a distributed Ray job.

Used by ``jobs/dedup.py`` (``ray job submit``), ``astradup dedup``, ``astradup report``, the demo and
the service's review queue. Nothing here runs an all-pairs scan inside a request: the job writes its
pairs to disk, and every reader reads them.

The job (``run_job``)::

    ok status rows -> ids not yet joined -> batches of ids (a Ray Data dataset)
      -> map_batches(Joiner): each actor opens the catalog; per batch one KNN request per modality
         for all its videos' rows (``Searcher.join_indexed``, match/selfjoin.py), then each video's
         candidates scored as ``astradup search`` scores them; keeps the labelled matches
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

Groups are connected components of the pairs at or above a label, computed by ``UnionFind`` over
integer ids in numpy arrays (millions of pairs).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from astradup import telemetry
from astradup.config import Config
from astradup.logs import get_logger
from astradup.records import STATUS_OK, AudioCopy, Label, SegmentMatch, VideoMatch
from astradup.reviews import Verdicts
from astradup.uris import is_lite_uri

Tick = Callable[[int, int], None]  # (done, total): a progress bar's update (astradup/progress.py)

log = get_logger(__name__)

MANIFEST = "manifest.jsonl"
PARTS = "parts"
DEFAULT_BATCH = 50  # query videos per batch (one Parquet part, one manifest entry)
PAIR_COLUMNS = ("a", "b", "query_id", "source_id", "source_uri", "fused", "confidence", "label", "review",
                "scores", "notes", "segments", "audio_copy")


# ---------------------------------------------------------------- union-find


class UnionFind:
    """Disjoint sets over ints 0..n-1 in numpy arrays: union by size, path halving on find.

    ``union_many`` takes the pairs as two int arrays; the loop runs over Python ints taken from the
    arrays once (millions of pairs take seconds, memory is two int64 arrays of n)."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)
        self.size = np.ones(n, dtype=np.int64)

    def find(self, x: int) -> int:
        p = self.parent
        while p[x] != x:
            p[x] = p[p[x]]
            x = int(p[x])
        return int(x)

    def union_many(self, a: np.ndarray, b: np.ndarray) -> None:
        parent = self.parent.tolist()
        size = self.size.tolist()
        for x, y in zip(np.asarray(a, dtype=np.int64).tolist(), np.asarray(b, dtype=np.int64).tolist()):
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            while parent[y] != y:
                parent[y] = parent[parent[y]]
                y = parent[y]
            if x == y:
                continue
            if size[x] < size[y]:
                x, y = y, x
            parent[y] = x
            size[x] += size[y]
        self.parent = np.asarray(parent, dtype=np.int64)
        self.size = np.asarray(size, dtype=np.int64)

    def roots(self) -> np.ndarray:
        """The root of every element (vectorised pointer jumping until nothing changes)."""
        r = self.parent.copy()
        while True:
            nxt = r[r]
            if np.array_equal(nxt, r):
                return r
            r = nxt


def components(a: Iterable[str], b: Iterable[str]) -> list[list[str]]:
    """Connected components of the pairs (a[i], b[i]) of string ids; sorted ids in each group,
    biggest group first (then by first id), as ``astradup.match.groups.connected_components``."""
    a, b = np.asarray(list(a), dtype=object), np.asarray(list(b), dtype=object)
    if not len(a):
        return []
    names, inv = np.unique(np.concatenate([a, b]).astype(str), return_inverse=True)
    uf = UnionFind(len(names))
    uf.union_many(inv[: len(a)], inv[len(a):])
    roots = uf.roots()
    order = np.argsort(roots, kind="stable")
    cuts = np.flatnonzero(np.diff(roots[order])) + 1
    groups = [sorted(names[idx].tolist()) for idx in np.split(order, cuts)]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


# ---------------------------------------------------------------- pair records


def match_to_row(query_id: str, m: VideoMatch) -> dict[str, Any]:
    a, b = sorted((query_id, m.source_id))
    return {"a": a, "b": b, "query_id": query_id, "source_id": m.source_id, "source_uri": m.source_uri,
            "fused": float(m.fused), "confidence": float(m.confidence), "label": m.label, "review": bool(m.review),
            "scores": json.dumps({k: float(v) for k, v in m.scores.items()}), "notes": json.dumps(list(m.notes)),
            "segments": json.dumps([[s.query_id, float(s.q_start), float(s.q_end), s.source_id, float(s.s_start),
                                     float(s.s_end), float(s.score), list(s.modalities)] for s in m.segments]),
            "audio_copy": _audio_copy_json(m.audio_copy)}


def _audio_copy_json(a: AudioCopy | None) -> str | None:
    """[q_start, q_end, s_start, s_end, score], or None (a null cell) when the pair has no flag."""
    if a is None:
        return None
    return json.dumps([float(a.q_start), float(a.q_end), float(a.s_start), float(a.s_end), float(a.score)])


def _audio_copy_of(r: dict[str, Any], query_id: str, source_id: str) -> AudioCopy | None:
    """The flag of a pair row; parts written before the flag existed have no such column: no flag."""
    cell = r.get("audio_copy")
    if not cell:
        return None
    qs, qe, ss, se, sc = json.loads(cell)
    return AudioCopy(query_id, qs, qe, source_id, ss, se, sc, ("audio",))


def row_to_match(r: dict[str, Any]) -> VideoMatch:
    segs = tuple(SegmentMatch(q, qs, qe, s, ss, se, sc, tuple(mod))
                 for q, qs, qe, s, ss, se, sc, mod in json.loads(r["segments"]))
    return VideoMatch(source_id=r["source_id"], source_uri=r["source_uri"], scores=json.loads(r["scores"]),
                      fused=float(r["fused"]), confidence=float(r["confidence"]), label=r["label"],
                      review=bool(r["review"]), notes=tuple(json.loads(r["notes"])), segments=segs,
                      audio_copy=_audio_copy_of(r, r["query_id"], r["source_id"]))


def _pair_schema():
    import pyarrow as pa

    return pa.schema([("a", pa.string()), ("b", pa.string()), ("query_id", pa.string()),
                      ("source_id", pa.string()), ("source_uri", pa.string()), ("fused", pa.float64()),
                      ("confidence", pa.float64()), ("label", pa.string()), ("review", pa.bool_()),
                      ("scores", pa.string()), ("notes", pa.string()), ("segments", pa.string()),
                      ("audio_copy", pa.string())])


# ---------------------------------------------------------------- the store on disk


def dedup_dir(cfg: Config) -> Path:
    return Path(cfg.data_dir) / "dedup"


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Manifest:
    """What the job has joined: finished batches -> the query ids they searched and their part.

    On disk one JSON line per finished batch, appended (and fsynced) after its part is in place: a
    batch costs one short append however large the library (a rewritten file would cost the whole
    manifest per batch). A line torn by a kill mid-append is ignored on load (its batch is re-run)."""

    batches: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, root: Path) -> "Manifest":
        try:
            text = (root / MANIFEST).read_text()
        except FileNotFoundError:
            return cls({})
        batches: dict[str, dict[str, Any]] = {}
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                batches[entry["batch"]] = entry
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line
        return cls(batches)

    def append(self, root: Path, name: str, entry: dict[str, Any]) -> None:
        entry = {"batch": name, **entry}
        path = root / MANIFEST
        with open(path, "a+b") as f:
            if f.seek(0, os.SEEK_END):
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")  # after a torn line, start a fresh one
            f.write((json.dumps(entry) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        self.batches[name] = entry

    def save(self, root: Path) -> None:
        """The whole manifest at once (temp file + rename)."""
        _atomic_bytes(root / MANIFEST, "".join(json.dumps({"batch": k, **v}) + "\n"
                                               for k, v in self.batches.items()).encode())

    def joined(self) -> set[str]:
        return {v for b in self.batches.values() for v in b["ids"]}


def batch_name(ids: list[str]) -> str:
    """A batch is named by its ids, so a re-run that makes the same batch finds its part."""
    return "b-" + hashlib.blake2b("\n".join(sorted(ids)).encode(), digest_size=10).hexdigest()


def plan_batches(todo: Iterable[str], batch_size: int) -> list[tuple[str, list[str]]]:
    ids = sorted(set(todo))
    chunks = [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]
    return [(batch_name(c), c) for c in chunks]


def write_part(root: Path, name: str, rows: list[dict[str, Any]]) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=_pair_schema())
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    rel = f"{PARTS}/{name}.parquet"
    _atomic_bytes(root / rel, sink.getvalue().to_pybytes())
    return rel


def release_vectors(catalog) -> None:
    """Close a catalog's vector store if it opened one: a Milvus Lite file then is free for the
    job's worker (one process per file)."""
    vs = getattr(catalog, "_vectors", None)
    if vs is not None:
        vs.close()
        catalog._vectors = None


def live_ids(shards) -> dict[str, str]:
    """id -> uri of every video whose latest status is ok."""
    return {v: r.get("uri") or "" for v, r in shards.latest_status().items() if r["status"] == STATUS_OK}


# ---------------------------------------------------------------- the workers


class Joiner:
    """One batch of query ids -> the pairs their searches found (labelled, or with a copied segment).

    A Ray Data callable class: each actor opens the catalog once (on Milvus Lite one actor only);
    also called in-process with a ``searcher`` the caller already holds."""

    def __init__(self, cfg: Config, searcher=None) -> None:
        from astradup.search import Searcher

        if searcher is None:
            from astradup.logs import setup_logging

            setup_logging(cfg.log)
        self.searcher = searcher or Searcher(cfg)

    def join(self, ids: list[str]) -> list[dict[str, Any]]:
        feats = self.searcher.catalog.shards.load_features(ids)
        queries = {vid: feats[vid] for vid in ids if vid in feats}  # one deleted since planning is gone
        found = self.searcher.join_indexed(queries)
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
    shards = searcher.catalog.shards if searcher is not None else Catalog(cfg).shards
    live = live_ids(shards)
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
        joiner = Joiner(cfg, searcher)
        for name, ids in plan:
            finished(name, joiner.join(ids))
    else:
        for name, rows in _ray_batches(cfg, plan, concurrency):
            finished(name, rows)
    summary.wall_seconds = time.time() - t0
    return summary


def _ray_batches(cfg: Config, plan: list[tuple[str, list[str]]], concurrency: int
                 ) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    import ray
    from ray.data import ActorPoolStrategy

    from astradup.pipeline import ensure_ray

    ensure_ray(cfg)
    if _is_lite(cfg):
        n = 1  # Milvus Lite: one process per .db file
    else:
        n = concurrency or max(1, int(ray.cluster_resources().get("CPU", 1)))
    n = max(1, min(n, len(plan)))
    ds = ray.data.from_items([{"batch": name, "ids": json.dumps(ids)} for name, ids in plan],
                             override_num_blocks=len(plan))
    ds = ds.map_batches(Joiner, fn_constructor_args=(cfg,), batch_size=1, compute=ActorPoolStrategy(size=n),
                        num_cpus=1, batch_format="numpy")
    it = ds.iter_rows()
    try:
        for row in it:
            yield str(row["batch"]), json.loads(row["rows"])
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()  # a driver that stops early (killed, a hook raised) stops the actors now
        if _is_lite(cfg):
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


# ---------------------------------------------------------------- reading the job's output


def _with_all_columns(t):
    """A part as the current schema has it: parts written before a column existed (audio_copy) get
    it as nulls, so old and new parts concatenate and an old pair reads as having no flag."""
    import pyarrow as pa

    schema = _pair_schema()
    for f in schema:
        if f.name not in t.column_names:
            t = t.append_column(f, pa.nulls(t.num_rows, type=f.type))
    return t.select([f.name for f in schema])


def read_pairs(cfg: Config, live: set[str] | None = None) -> dict[tuple[str, str], tuple[str, VideoMatch]]:
    """(a, b) -> (query id, best match) over every part in the manifest, pairs of live ids only;
    the direction with the higher fused score wins (on a tie, the search from ``a``).

    The choice is made in Arrow (filter, sort, first of each pair), so only the pairs kept become
    Python objects."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root = dedup_dir(cfg)
    tables = [pq.read_table(root / e["part"]) for e in Manifest.load(root).batches.values()
              if (root / e["part"]).is_file()]
    tables = [_with_all_columns(t) for t in tables if t.num_rows]
    if not tables:
        return {}
    t = pa.concat_tables(tables)
    if live is not None:
        ids = pa.array(sorted(live), type=pa.string())
        t = t.filter(pc.and_(pc.is_in(t["a"], value_set=ids), pc.is_in(t["b"], value_set=ids)))
    t = t.append_column("from_a", pc.cast(pc.equal(t["query_id"], t["a"]), pa.int8()))
    t = t.sort_by([("a", "ascending"), ("b", "ascending"), ("fused", "descending"), ("from_a", "descending")])
    a = np.asarray(t["a"].to_pylist(), dtype=object)
    b = np.asarray(t["b"].to_pylist(), dtype=object)
    first = np.ones(len(a), dtype=bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    kept = t.filter(pa.array(first)).drop_columns(["from_a"])
    return {(r["a"], r["b"]): (r["query_id"], row_to_match(r)) for r in kept.to_pylist()}


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


def _partial_of(query_id: str, m: VideoMatch) -> list[tuple[str, SegmentMatch]]:
    """What a pair below the label contributes to the partial copies: its audio copy first (an
    AudioCopy, a SegmentMatch readers can tell apart), then its segments except the sound-only ones
    the audio copy already covers (the same stretch of soundtrack, listed once)."""
    return [(query_id, sg) for sg in m.copied()]


def dedup_groups(cfg: Config, min_label: str = "near-duplicate", searcher=None, run: bool = True,
                 progress: Callable[[str], None] | None = None, verdicts: Verdicts | None = None,
                 tick: Tick | None = None):
    """(groups, best, uris, partial) from the job's pairs, as ``astradup dedup`` always answered:
    pairs at or above ``min_label`` grouped; ``best`` maps (a, b) to the better direction's match;
    ``partial`` lists copied segments of the pairs below the label whose videos are not both
    grouped, a copied soundtrack as an ``AudioCopy`` segment. ``run``: run the job first when its
    output is missing or stale. ``verdicts`` (default: the data dir's) are applied to every pair:
    a rejected one is in neither list, a confirmed one's match carries ``decision`` (a caller that
    marks partial copies passes the same ``Verdicts`` and asks it about each)."""
    from astradup.catalog import Catalog

    if run:
        ensure_joined(cfg, searcher, progress, tick)
    shards = searcher.catalog.shards if searcher is not None else Catalog(cfg).shards
    uris = live_ids(shards)
    verdicts = verdicts if verdicts is not None else Verdicts.load(cfg.data_dir)
    best: dict[tuple[str, str], VideoMatch] = {}
    partial: list[tuple[str, SegmentMatch]] = []
    for k, (q, found) in sorted(read_pairs(cfg, set(uris)).items()):
        m = verdicts.apply(q, found)
        if m is None:
            continue
        if Label(m.label).rank >= Label(min_label).rank:
            best[k] = m
        else:
            partial += _partial_of(q, m)
    groups = components([a for a, _ in best], [b for _, b in best])
    grouped = {v for g in groups for v in g}
    partial = [(q, sg) for q, sg in partial if not (q in grouped and sg.source_id in grouped)]
    return groups, best, uris, partial


def review_items(cfg: Config, live: dict[str, dict], verdicts: Verdicts) -> list[dict[str, Any]]:
    """The review queue from the job's pairs: flagged for review (low confidence), both videos live,
    no verdict yet (confirmed or rejected); least confident first. ``live``: id -> status row."""
    items = []
    for (a, b), (q, m) in read_pairs(cfg, set(live)).items():
        if not m.review or verdicts.decision(a, b) is not None:
            continue
        d = m.to_dict()
        qrow, srow = live.get(q) or {}, live.get(m.source_id) or {}
        d.update(query_id=q, query_name=Path(qrow.get("uri") or "").name, name=Path(m.source_uri).name,
                 duration=srow.get("duration"), query_duration=qrow.get("duration"))
        items.append(d)
    return sorted(items, key=lambda d: (d["confidence"], -d["fused"], d["query_id"]))
