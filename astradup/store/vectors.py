"""The vector index: frame, audio-window (and opt-in pHash) KNN over Milvus, keyed by video_id.

``VectorStore`` is the one front door; its jobs live in their own modules:

* store/milvus_client.py       the client (Lite or server), retries, reconnects
* store/milvus_collections.py  the collections' schemas, indexes, layouts (and the pHash choice)
* store/vector_writes.py       keyed upserts, stale rows, deletes
* store/milvus_expr.py         filter expressions and row keys

This module answers the reads: searches (plain tuples, so the match stage never sees Milvus
types), counts, a video's frames. Moving from a laptop (Milvus Lite, a ``*.db`` path, the default)
to a cluster (``http(s)://host:19530``) is a config change.

Consistency of searches (``search.consistency``): Strong makes a server wait for its next time
tick before each search (~0.3 s a request here, 600 ms for a 60 s query's two searches); Session
still shows a process its own writes at once and skips that wait when it has written nothing (a
search service), Bounded lets a search miss rows written in the last few seconds. Lite answers
every level alike. Counts and deletes stay Strong.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from pymilvus import MilvusClient

# search.consistency levels and vectors.phash modes (auto = off: no pHash collection), listed once
# by the config model
from astradup.config import CONSISTENCY_LEVELS, PHASH_MODES
from astradup.errors import ConfigError
from astradup.records import VideoFeatures
from astradup.store import vector_writes
from astradup.store.milvus_client import MilvusConnection
from astradup.store.milvus_collections import PHASH_BITS, PHASH_BYTES, VectorCollections
from astradup.store.milvus_expr import Exclude, check_id, exclude_filter, id_filter, video_filter
from astradup.store.retry import RetryPolicy

T = TypeVar("T")
DEFAULT_AUDIO_DIM = 26  # must equal the audio embedder's output width (MFCC mean + std of 13)
_SEARCH_CHUNK = 256  # query vectors per search request
_QUERY_WINDOW = 16384  # Milvus caps offset+limit of a plain query here; beyond it, iterate
_AT_ONCE = 4  # searches of one store in flight at once (at_once): a query's frames, mirror, audio, pitch


class VectorStore:
    """Frame and audio-window vectors (and with ``phash="on"`` pHash codes) of indexed videos.

    ``upsert_video`` replaces everything a video had, so re-indexing never duplicates rows, even
    when two writers index the same video at once. Thread-safe: threads may search while another
    one writes.
    """

    def __init__(self, uri: str, token: str = "", prefix: str = "astradup", visual_dim: int = 512,
                 audio_dim: int = DEFAULT_AUDIO_DIM, index_type: str = "AUTOINDEX",
                 retry: RetryPolicy | None = None, consistency: str = "Strong",
                 recreate: bool = False, phash: str = "auto") -> None:
        """``recreate`` drops this prefix's collections first (``reindex``: the shards refill them,
        whatever dims or layout the old ones had). ``phash`` (PHASH_MODES): whether the pHash codes
        get a collection; only ``on`` makes one (see store/milvus_collections.py)."""
        if visual_dim < 1 or audio_dim < 1:
            raise ConfigError(f"vector dims must be positive, got visual={visual_dim} audio={audio_dim}")
        if phash not in PHASH_MODES:
            raise ConfigError(f"vectors.phash must be one of {', '.join(PHASH_MODES)}, got {phash!r}")
        if consistency not in CONSISTENCY_LEVELS:
            raise ConfigError(f"search.consistency must be one of {', '.join(CONSISTENCY_LEVELS)}, got {consistency!r}")
        self.consistency = consistency  # of searches; counts and deletes stay Strong
        self.visual_dim, self.audio_dim = int(visual_dim), int(audio_dim)
        self.prefix, self.index_type = prefix, index_type
        self._pool: ThreadPoolExecutor | None = None  # at_once's threads, made on first use
        self._pool_lock = threading.Lock()
        self._conn = MilvusConnection(uri, token, retry)
        self.lite, self.uri, self.retry = self._conn.lite, self._conn.uri, self._conn.retry
        self._cols = VectorCollections(self._conn, prefix, self.visual_dim, self.audio_dim, index_type,
                                       phash_enabled=phash == "on")
        self.phash_enabled = self._cols.phash_enabled
        self.frames, self.phash, self.audio = self._cols.frames, self._cols.phash, self._cols.audio
        try:
            self._cols.open(recreate=recreate)
        except BaseException:
            self.close()
            raise

    @property
    def client(self) -> MilvusClient:
        """The current client (a reconnect after an outage replaces it)."""
        return self._conn.client

    @property
    def phash_binary(self) -> bool:
        """Whether the pHash codes are a BINARY_VECTOR with HAMMING (a server) or +-1 floats (Lite)."""
        return self._cols.phash_binary

    def _call(self, what: str, fn: Callable[[MilvusClient], T]) -> T:
        return self._conn.call(what, fn)

    def at_once(self, *calls: Callable[[], Any]) -> list[Any]:
        """Each of ``calls`` (searches of this store) run at once on a server, their results in
        order: one query's frame, mirrored and audio searches are round trips that a server
        answers in parallel while the client parses the others' hits. Lite runs them in turn."""
        if self.lite or len(calls) < 2:
            return [c() for c in calls]
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(_AT_ONCE, thread_name_prefix="milvus-search")
        return [f.result() for f in [self._pool.submit(c) for c in calls]]

    def beside(self, here: Callable[[], Any], there: Callable[[], Any]) -> tuple[Any, Any]:
        """(``here()``, ``there()``), ``there`` on a thread of its own while ``here`` runs in this one
        (Lite: in turn). Not ``at_once``'s pool: the caller may be one of its threads, and callers
        holding every pool thread while waiting on queued work would never be answered."""
        if self.lite:
            return here(), there()
        with ThreadPoolExecutor(1, thread_name_prefix="milvus-beside") as one:
            later = one.submit(there)
            return here(), later.result()

    # ---------------------------------------------------------------- writes (store/vector_writes.py)

    def drop_all(self) -> None:
        """Drop and re-create the collections (``reindex`` refills them from the shards);
        collections of the auto-id layout come back keyed, an unused pHash collection is gone."""
        self._cols.open(recreate=True)

    def upsert_video(self, f: VideoFeatures) -> None:
        """Replace every vector of ``f.video_id`` with those of ``f``."""
        self.upsert_many([f])

    def upsert_many(self, items: Sequence[VideoFeatures]) -> int:
        """Replace the vectors of many videos (idempotent, keyed rows); returns videos written.
        Records that are not ``ok`` are skipped and leave existing vectors alone."""
        return vector_writes.upsert_many(self._cols, items)

    def delete_video(self, video_id: str) -> None:
        self.delete_videos([video_id])

    def delete_videos(self, video_ids: Sequence[str]) -> None:
        """Every row of these videos: one delete per collection per 500 ids, not per video."""
        for v in video_ids:
            check_id(v)
        vector_writes.delete_ids(self._cols, list(video_ids))

    # ---------------------------------------------------------------- reads

    def has_video(self, video_id: str) -> bool:
        flt = video_filter(video_id)
        return any(self._call(f"query {name}", lambda c, n=name: c.query(
            n, filter=flt, output_fields=["video_id"], limit=1)) for name in (self.frames, self.audio))

    def video_ids(self) -> set[str]:
        """Every video with frames or audio windows (a full scan of the video_id column)."""
        out: set[str] = set()
        for name in (self.frames, self.audio):
            rows = self._call(f"scan {name}", lambda c, n=name: _scan(c, n, "", ["video_id"], 8192))
            out.update(r["video_id"] for r in rows)
        return out

    def count(self, video_id: str | None = None) -> dict[str, int]:
        """Exact live rows per collection, of one video or of all (count(*) under Strong
        consistency sees every write)."""
        flt = "" if video_id is None else video_filter(video_id)
        out = {}
        for key, name in (("frames", self.frames), ("phash", self.phash), ("audio", self.audio)):
            if name not in self._cols.in_use:
                out[key] = 0
                continue
            res = self._call(f"count {name}", lambda c, n=name: c.query(
                n, filter=flt, output_fields=["count(*)"], consistency_level="Strong"))
            out[key] = int(res[0]["count(*)"])
        return out

    def index_progress(self) -> dict[str, dict[str, int]]:
        """Per vector collection: ``rows`` (a server counts its sealed segments'), ``indexed``,
        ``pending`` (rows waiting for an index build) and ``ready`` (rows an index serves). A
        restarted server may compact and index its segments again while reporting every row
        indexed, and a first build reports rows both unindexed and pending, so ``ready`` is the
        smaller of ``indexed`` and ``rows - pending``; searches are timed (and trusted to be fast)
        only once ``ready == rows``."""
        out = {}
        for key, name in (("frames", self.frames), ("audio", self.audio)):
            d = self._call(f"describe index {name}", lambda c, n=name: c.describe_index(n, "vector")) or {}
            rows, done = int(d.get("total_rows", 0)), int(d.get("indexed_rows", 0))
            pending = int(d.get("pending_index_rows", 0))
            out[key] = {"rows": rows, "indexed": done, "pending": pending, "ready": max(0, min(done, rows - pending))}
        return out

    def get_frames(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(t float32[T], vectors float32[T, D]) of one video sorted by t; empty if unknown."""
        rows = self._query_all(self.frames, video_filter(video_id), ["t", "vector"])
        if not rows:
            return np.zeros((0,), np.float32), np.zeros((0, self.visual_dim), np.float32)
        t = np.asarray([r["t"] for r in rows], np.float32)
        v = np.asarray([r["vector"] for r in rows], np.float32).reshape(len(rows), self.visual_dim)
        order = np.argsort(t, kind="stable")
        return t[order], v[order]

    def scan_vectors(self, kind: str, video_ids: Sequence[str] | None = None) -> VectorScan:
        """Every stored row of the ``frames`` or ``audio`` collection (or only ``video_ids``'), as
        compact arrays: the dedup job's local index (dedup/local_knn.py) reads the library through
        it, so millions of rows are never held as pymilvus' row dicts at once. One retry unit per
        chunk of 1 000 ids, or for the whole collection (an iterator does not survive a lost
        connection)."""
        name, tcols = {"frames": (self.frames, ["t"]), "audio": (self.audio, ["t_start", "t_end"])}[kind]
        ids = sorted(video_ids or ())
        chunks = [None] if video_ids is None else [ids[i:i + 1000] for i in range(0, len(ids), 1000)]
        parts = [self._call(f"scan {name}", lambda c, ids=ids: _scan_arrays(c, name, ids, tcols)) for ids in chunks]
        return VectorScan.concat(parts, len(tcols), self.visual_dim if kind == "frames" else self.audio_dim)

    def _query_all(self, name: str, flt: str, fields: list[str]) -> list[dict]:
        rows = self._call(f"query {name}", lambda c: c.query(name, filter=flt, output_fields=fields,
                                                             limit=_QUERY_WINDOW))
        if len(rows) < _QUERY_WINDOW:
            return list(rows)
        # More rows than one query may return: page through them (a retry restarts the scan).
        return self._call(f"scan {name}", lambda c: _scan(c, name, flt, fields, 4096))

    def search_frames(self, vectors: np.ndarray, k: int,
                      exclude: Exclude = None) -> list[list[tuple[str, float, float]]]:
        """Per query row: (video_id, t, cosine) best first, the frames of ``exclude`` (an id or
        several) left out."""
        q = _as_queries(vectors, self.visual_dim, "frame")
        hits = self._search(self.frames, "vector", list(q), k, exclude, "IP", ["video_id", "t"])
        return [[(h["entity"]["video_id"], float(h["entity"]["t"]), float(h["distance"])) for h in row]
                for row in hits]

    def search_phash(self, codes: np.ndarray, k: int,
                     exclude: Exclude = None) -> list[list[tuple[str, float, float]]]:
        """Per query code: (video_id, t, 1 - hamming/256) nearest first."""
        if not self.phash_enabled:
            raise ConfigError("pHash codes are not indexed in this Milvus database (only vectors.phash: on "
                              "indexes them; scoring reads them from the shards); set vectors.phash: on and run "
                              "`astradup reindex` to search them")
        c = np.asarray(codes)
        if c.ndim != 2 or c.shape[1] != PHASH_BYTES or c.dtype != np.uint8:
            raise ValueError(f"phash queries must be uint8 [Q, {PHASH_BYTES}], got {c.dtype} {c.shape}")
        metric = "HAMMING" if self.phash_binary else "IP"
        hits = self._search(self.phash, "code", self._cols.codes_to_field(c), k, exclude, metric, ["video_id", "t"])
        out = []
        for row in hits:
            res = []
            for h in row:
                d = float(h["distance"])
                hamming = round(d) if self.phash_binary else round((PHASH_BITS - d) / 2)
                res.append((h["entity"]["video_id"], float(h["entity"]["t"]), 1.0 - hamming / PHASH_BITS))
            out.append(res)
        return out

    def search_audio(self, vectors: np.ndarray, k: int,
                     exclude: Exclude = None) -> list[list[tuple[str, float, float, float]]]:
        """Per query window: (video_id, t_start, t_end, cosine) best first."""
        q = _as_queries(vectors, self.audio_dim, "audio")
        hits = self._search(self.audio, "vector", list(q), k, exclude, "IP", ["video_id", "t_start", "t_end"])
        return [[(h["entity"]["video_id"], float(h["entity"]["t_start"]), float(h["entity"]["t_end"]),
                  float(h["distance"])) for h in row] for row in hits]

    def _search(self, name: str, field: str, data: list[Any], k: int, exclude: Exclude,
                metric: str, fields: list[str]) -> list[list[Any]]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        flt = exclude_filter(exclude)
        out: list[list[Any]] = []
        for i in range(0, len(data), _SEARCH_CHUNK):
            chunk = data[i:i + _SEARCH_CHUNK]
            res = self._call(f"search {name}", lambda c: c.search(
                name, data=chunk, limit=k, filter=flt, output_fields=fields, anns_field=field,
                search_params={"metric_type": metric}, consistency_level=self.consistency))
            out.extend(list(r) for r in res)
        return out

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close the client; the last store on a Lite path also stops its embedded server."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._conn.close()

    def __enter__(self) -> "VectorStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _scan(client: MilvusClient, name: str, flt: str, fields: list[str], batch_size: int) -> list[dict]:
    """Every matching row through a query iterator (one unit for the retry: an iterator does not
    survive a lost connection, so a retry scans again from the start)."""
    out: list[dict] = []
    it = client.query_iterator(name, batch_size=batch_size, filter=flt, output_fields=fields)
    try:
        while batch := it.next():
            out.extend(batch)
    finally:
        it.close()
    return out



@dataclass
class VectorScan:
    """Rows read by ``scan_vectors``: owner ``names[owner[i]]``, times [n, 1] (t) or [n, 2]
    (t_start, t_end), vectors [n, d] float32."""

    names: list[str]
    owner: np.ndarray
    times: np.ndarray
    vectors: np.ndarray

    @classmethod
    def concat(cls, parts: Sequence["VectorScan"], n_times: int, dim: int) -> "VectorScan":
        parts = [p for p in parts if len(p.owner)]
        code: dict[str, int] = {}
        owners = []
        for p in parts:
            remap = np.asarray([code.setdefault(v, len(code)) for v in p.names], np.int32)
            owners.append(remap[p.owner])
        names = list(code)
        if not parts:
            return cls(names, np.zeros(0, np.int32), np.zeros((0, n_times), np.float32), np.zeros((0, dim), np.float32))
        return cls(names, np.concatenate(owners).astype(np.int32), np.concatenate([p.times for p in parts]),
                   np.concatenate([p.vectors for p in parts]))


def _scan_arrays(client: MilvusClient, name: str, ids: list[str] | None, tcols: list[str],
                 batch_size: int = 16384) -> VectorScan:
    """``_scan`` into arrays batch by batch (the filter names ``ids`` when given)."""
    flt = "" if ids is None else id_filter(ids)
    code: dict[str, int] = {}
    owner, times, vecs = [], [], []
    it = client.query_iterator(name, batch_size=batch_size, filter=flt, output_fields=["video_id", *tcols, "vector"])
    try:
        while batch := it.next():
            owner.append(np.asarray([code.setdefault(r["video_id"], len(code)) for r in batch], np.int32))
            times.append(np.asarray([[r[c] for c in tcols] for r in batch], np.float32))
            vecs.append(np.asarray([r["vector"] for r in batch], np.float32))
    finally:
        it.close()
    if not owner:
        return VectorScan([], np.zeros(0, np.int32), np.zeros((0, len(tcols)), np.float32),
                          np.zeros((0, 0), np.float32))
    return VectorScan(list(code), np.concatenate(owner), np.concatenate(times), np.concatenate(vecs))


def _as_queries(vectors: np.ndarray, dim: int, what: str) -> np.ndarray:
    q = np.asarray(vectors, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != dim:
        raise ConfigError(f"{what} queries are {q.shape}, the collection holds {dim}-d vectors")
    return np.ascontiguousarray(q)


__all__ = ["DEFAULT_AUDIO_DIM", "VectorScan", "VectorStore"]
