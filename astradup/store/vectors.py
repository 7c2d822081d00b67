"""Milvus collections for frame, pHash and audio-window KNN.

One ``VectorStore`` talks to Milvus Lite (a local ``*.db`` path, the default) or a Milvus
server (``http(s)://host:19530``) through the same ``pymilvus.MilvusClient`` calls, so moving
from a laptop to a cluster is a config change.

Collections (``<prefix>_frames``, ``<prefix>_phash``, ``<prefix>_audio``) hold one row per
frame or audio window with its ``video_id`` and time, so a hit says which video *and where*.
Vectors are L2-normalised upstream, so inner product equals cosine and skips a normalisation.

pHash codes are 256-bit. A server stores them as ``BINARY_VECTOR(256)`` searched with HAMMING
over a BIN_FLAT index (exact; a popcount over 32 bytes a row is cheap even at millions of
frames). Milvus Lite has no binary vectors, so there the bits are stored as a 256-d float
vector of +-1 searched by inner product: ``ip = 256 - 2 * hamming``, which is exact and uses
the same matrix-product path as the frame search. (0/1 floats with L2 would also give Hamming,
but Lite's brute-force L2 materialises a [queries, rows, 256] difference tensor.)
No search path reads the pHash collection (scoring takes the codes from the shards), and on
Lite that float copy was 2.06 of 5.7 MB per hour of video, so ``phash="auto"`` (the default)
makes it on a server only, where BINARY_VECTOR costs 32 bytes a row.

Milvus Lite allows one process per database: it takes a lock on the ``.db`` directory, and a
second process fails to open it (reported as ConfigError). Within a process, stores on the same
path share one embedded server; the last ``close()`` stops it, so reopening the path reads the
collections back from disk like a fresh process would.

Concurrent writers. Every row has a deterministic primary key, ``"<video_id>/<row>"`` (a
VARCHAR; ``row`` is the frame's or window's position, also stored as a field), and is written
with ``upsert``. Two writers indexing the same video (two overlapping backfills on a server,
a retry after a lost reply) therefore overwrite each other's rows instead of adding copies; a
re-index with fewer rows then deletes the rows past its count. Auto ids with delete-then-insert,
the earlier layout, doubled a video's rows when two writers interleaved (both deletes, then
both inserts). Collections made with that layout (INT64 auto-id keys) still open and work with
the old delete-then-insert writes, with a warning; ``astradup reindex`` re-creates them keyed.

Outages. Every client call goes through :mod:`astradup.store.retry` (``cfg.retry``): transient
errors (server unreachable, restarting, busy) are retried with capped exponential backoff and
logged on the ``astradup.store`` logger; a server client whose channel was closed under it is
replaced by a new one. Searches never see a half-written video either way: an upsert replaces
rows in place, and a deletion shows as the video's absence.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException

# search.consistency levels and vectors.phash modes (auto: a pHash collection on a Milvus server,
# none on Lite), listed once by the config model
from astradup.config import CONSISTENCY_LEVELS, PHASH_MODES  # noqa: F401
from astradup.errors import ConfigError
from astradup.records import STATUS_OK, VideoFeatures
from astradup.store.retry import RetryPolicy, is_connection_error, is_dead_channel, is_not_loaded, retry_call
from astradup.uris import is_lite_uri  # noqa: F401 (re-exported: callers import it from here)

LOG = logging.getLogger("astradup.store")
T = TypeVar("T")
Exclude = str | Collection[str] | None  # one video id, or several, whose rows a search leaves out

PHASH_BITS = 256
PHASH_BYTES = PHASH_BITS // 8
DEFAULT_AUDIO_DIM = 26  # must equal the audio embedder's output width (MFCC mean + std of 13)
VIDEO_ID_MAX = 64  # VARCHAR length of video_id
PK_MAX = VIDEO_ID_MAX + 11  # VARCHAR length of the "<video_id>/<row>" primary key

# Strong makes a server wait for its next time tick before each search (~0.3 s a request here,
# 600 ms for a 60 s query's two searches); Session still shows a process its own writes at
# once and skips that wait when it has written nothing (a search service), Bounded lets a search
# miss rows written in the last few seconds. Lite answers every level alike.
_SEARCH_CHUNK = 256  # query vectors per search request
_INSERT_CHUNK = 4096  # rows per insert request (~8 MiB at 512-d, well under gRPC limits)
_DELETE_CHUNK = 500  # video ids per delete filter
_STALE_CHUNK = 256  # OR terms per stale-row delete (one per batch of 100; 256 parse on Lite and a 2.3 server)
_RECONNECT_TIMEOUT = 10.0  # seconds a replacement client waits for its channel
_QUERY_WINDOW = 16384  # Milvus caps offset+limit of a plain query here; beyond it, iterate

_lite_lock = threading.Lock()
_lite_refs: dict[str, int] = {}  # abs .db path -> open VectorStores in this process


class _DropMvccWarning(logging.Filter):
    """Lite and 2.3 servers have no MVCC timestamp service; pymilvus warns on every iterator, harmlessly."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "mvccTs" not in record.getMessage()


def quote(value: str) -> str:
    """A Milvus filter string literal (backslash and double quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unpack_bits(codes: np.ndarray) -> np.ndarray:
    """uint8 [N, 32] packbits pHash -> float32 [N, 256] of 0/1 (same bit order as np.packbits)."""
    return np.unpackbits(np.ascontiguousarray(codes, dtype=np.uint8), axis=1).astype(np.float32)


class VectorStore:
    """Frame, pHash and audio-window vectors of indexed videos, keyed by video_id.

    ``upsert_video`` replaces everything a video had, so re-indexing never duplicates rows, even
    when two writers index the same video at once; searches return plain tuples so the match
    stage never sees Milvus types. Thread-safe: threads may search while another one writes.
    """

    def __init__(self, uri: str, token: str = "", prefix: str = "astradup", visual_dim: int = 512,
                 audio_dim: int = DEFAULT_AUDIO_DIM, index_type: str = "AUTOINDEX",
                 retry: RetryPolicy | None = None, consistency: str = "Strong",
                 recreate: bool = False, phash: str = "auto") -> None:
        """``recreate`` drops this prefix's collections first (``reindex``: the shards refill them,
        whatever dims or layout the old ones had). ``phash`` (PHASH_MODES): whether the pHash codes
        get a collection; ``auto`` = on a server only (see PHASH_MODES)."""
        if visual_dim < 1 or audio_dim < 1:
            raise ConfigError(f"vector dims must be positive, got visual={visual_dim} audio={audio_dim}")
        self.lite = is_lite_uri(uri)
        if phash not in PHASH_MODES:
            raise ConfigError(f"vectors.phash must be one of {', '.join(PHASH_MODES)}, got {phash!r}")
        self.phash_enabled = phash == "on" or (phash == "auto" and not self.lite)
        self.visual_dim, self.audio_dim = int(visual_dim), int(audio_dim)
        self.prefix = prefix
        self.index_type = index_type
        self.frames, self.phash, self.audio = f"{prefix}_frames", f"{prefix}_phash", f"{prefix}_audio"
        self.retry = retry or RetryPolicy()
        if consistency not in CONSISTENCY_LEVELS:
            raise ConfigError(f"search.consistency must be one of {', '.join(CONSISTENCY_LEVELS)}, got {consistency!r}")
        self.consistency = consistency  # of searches; counts and deletes stay Strong
        self._token = token
        self._client_lock = threading.Lock()
        self._legacy: set[str] = set()  # collections with auto-id INT64 keys (the pre-upsert layout)
        self._closed = False
        if self.lite:
            if not uri.endswith(".db"):
                raise ConfigError(f"Milvus Lite path must end with .db (pymilvus detects Lite by it): {uri!r}")
            uri = os.path.abspath(uri)
            os.makedirs(os.path.dirname(uri), exist_ok=True)
        _iter_log = logging.getLogger("pymilvus.client.iterator.query_iterator")
        if not any(isinstance(f, _DropMvccWarning) for f in _iter_log.filters):
            _iter_log.addFilter(_DropMvccWarning())
        self.uri = uri
        try:
            # No retry here: a wrong address must fail before a backfill decodes anything.
            self.client = self._new_client()
        except MilvusException as e:
            if self.lite:
                raise ConfigError(
                    f"cannot open Milvus Lite database {uri}: {e.message}. A Lite database belongs to "
                    "one process at a time; stop the other process (or use a Milvus server URI)") from e
            raise ConfigError(f"cannot connect to Milvus at {uri}: {e.message}") from e
        if self.lite:
            with _lite_lock:
                _lite_refs[uri] = _lite_refs.get(uri, 0) + 1
        try:
            if recreate:
                for name in (self.frames, self.phash, self.audio):
                    if self._call(f"has {name}", lambda c, n=name: c.has_collection(n)):
                        self._call(f"drop {name}", lambda c, n=name: c.drop_collection(n))
            self._phash_binary = self._open_collections()
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- client and retries

    def _new_client(self) -> MilvusClient:
        """A client of its own on a server (``dedicated``: pymilvus otherwise shares one channel per
        address in the process, and replacing a dead one would hand back the same channel)."""
        if self.lite:
            return MilvusClient(uri=self.uri, token=self._token)
        return MilvusClient(uri=self.uri, token=self._token, dedicated=True, timeout=_RECONNECT_TIMEOUT)

    def _call(self, what: str, fn: Callable[[MilvusClient], T],
              retry_if: Callable[[BaseException], bool] | None = None) -> T:
        """``fn(client)`` under the retry policy; a retry uses the current client (it may be a new one).
        ``retry_if`` adds errors this call may retry beyond the transient ones and "not loaded"."""
        used: list[MilvusClient] = []

        def attempt() -> T:
            client = self.client
            used.append(client)
            return fn(client)

        def before_retry(exc: BaseException, attempt_no: int) -> None:
            # pymilvus repairs an unreachable channel in place on the next call; a channel closed
            # under the client (or still failing to connect after two tries) gets a new client.
            if not self.lite and (is_dead_channel(exc) or (is_connection_error(exc) and attempt_no >= 3)):
                self._reconnect(used[-1])
            elif is_not_loaded(exc):
                # A restarted server reloads its collections by itself, a while after it answers;
                # asking for the load (idempotent) waits for it instead of failing the call.
                for name in (self.frames, self.phash, self.audio):
                    self.client.load_collection(name)

        return retry_call(attempt, self.retry, what, before_retry=before_retry,
                          retry_if=lambda e: is_not_loaded(e) or (retry_if is not None and retry_if(e)))

    def _reconnect(self, stale: MilvusClient) -> None:
        """Replace ``stale`` with a new client, unless another thread already did; a failure to
        connect is logged and left to the next retry."""
        with self._client_lock:
            if self.client is not stale or self._closed:
                return
            try:
                fresh = self._new_client()
            except Exception as e:  # still down: the retry loop waits and tries again
                LOG.warning("milvus reconnect to %s failed: %s: %s", self.uri, type(e).__name__,
                            getattr(e, "message", e))
                return
            self.client = fresh
        LOG.warning("milvus client for %s replaced by a new connection", self.uri)
        try:
            stale.close()
        except Exception:  # the old channel is already broken; nothing left to release
            pass

    # ---------------------------------------------------------------- schema

    @property
    def _collections(self) -> tuple[str, ...]:
        """The collections this store writes and counts."""
        return (self.frames, self.phash, self.audio) if self.phash_enabled else (self.frames, self.audio)

    def _open_collections(self) -> bool:
        """Create missing collections, check dims of existing ones, load all; returns pHash mode."""
        existing = set(self._call("list_collections", lambda c: c.list_collections()))
        self._legacy = set()
        for name, field, dim in ((self.frames, "vector", self.visual_dim), (self.audio, "vector", self.audio_dim)):
            if name in existing:
                self._check_dim(name, field, dim)
            else:
                self._create(name, self._schema(name, field, DataType.FLOAT_VECTOR, dim), field, "IP")
        if not self.phash_enabled:
            if self.phash in existing:
                LOG.info("collection %s is not used (vectors.phash: off here; scoring reads the codes from "
                         "the shards): `astradup reindex` drops it", self.phash)
            self._load_all()
            return False
        if self.phash in existing:
            kind, dim = self._field(self.phash, "code")
            if dim != PHASH_BITS:
                raise ConfigError(f"collection {self.phash} has code dim {dim}, expected {PHASH_BITS}")
            binary = kind == DataType.BINARY_VECTOR
        else:
            binary = False
            if not self.lite:  # Lite rejects BINARY_VECTOR; a server may too (old or restricted)
                try:
                    self._create(self.phash, self._schema(self.phash, "code", DataType.BINARY_VECTOR, PHASH_BITS),
                                 "code", "HAMMING", index_type="BIN_FLAT")
                    binary = True
                except MilvusException:
                    binary = False
            if not binary:
                # No query path searches pHash codes (scoring reads them from the shards), so on
                # Lite an HNSW graph over them was 2.1 MB per hour of video for nothing: FLAT
                # keeps them searchable (exact) at the cost of the raw codes only.
                self._create(self.phash, self._schema(self.phash, "code", DataType.FLOAT_VECTOR, PHASH_BITS),
                             "code", "IP", index_type="FLAT" if self.lite else None)
        if not self.lite and self.phash not in existing:  # another writer may have created it first
            binary = self._field(self.phash, "code")[0] == DataType.BINARY_VECTOR
        self._load_all()
        return binary

    def _load_all(self) -> None:
        for name in self._collections:
            if self._field(name, "id")[0] == DataType.INT64:
                self._legacy.add(name)
            # A reopened Lite database (and any server collection) starts released; search needs it
            # loaded. A collection another writer has just created may not have its index yet.
            self._call(f"load {name}", lambda c, n=name: c.load_collection(n), retry_if=_index_pending)
        if self._legacy:
            LOG.warning("collections %s use auto-id keys: writes there are delete-then-insert, which two "
                        "concurrent writers can duplicate; run `astradup reindex` to re-create them with "
                        "per-row keys", sorted(self._legacy))

    def _schema(self, name: str, field: str, dtype: DataType, dim: int) -> Any:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=PK_MAX)
        schema.add_field("video_id", DataType.VARCHAR, max_length=VIDEO_ID_MAX)
        schema.add_field("row", DataType.INT32)
        if name == self.audio:
            schema.add_field("t_start", DataType.FLOAT)
            schema.add_field("t_end", DataType.FLOAT)
        else:
            schema.add_field("t", DataType.FLOAT)
        schema.add_field(field, dtype, dim=dim)
        return schema

    def _create(self, name: str, schema: Any, field: str, metric: str, index_type: str | None = None) -> None:
        """Create a collection with its vector index; a failed create leaves no half-made collection
        (the pHash fallback to float codes re-creates the same name). Another process creating the
        same collection at the same moment (two jobs starting on an empty server) wins: this one
        then uses that collection as it finds it."""
        # Strong: a delete followed by an insert or a count is seen by the very next call.
        try:
            self._call(f"create {name}",
                       lambda c: c.create_collection(name, schema=schema, consistency_level="Strong"))
        except MilvusException:
            if self._call(f"has {name}", lambda c: c.has_collection(name)):
                return  # made by another writer just now: its creator builds its indexes
            raise
        try:
            params = self.client.prepare_index_params()
            params.add_index(field_name=field, index_type=index_type or self.index_type, metric_type=metric)
            # pymilvus polls a created index every 0.5 s until built (3 s for our six indexes). Lite
            # builds it inside the RPC, so skip the poll there; a server gets the usual wait.
            try:
                self._call(f"index {name}", lambda c: c.create_index(name, params, sync=not self.lite))
            except MilvusException as e:
                if "already exist" not in str(e.message).lower():
                    raise  # "already exists": a concurrent creator of the same collection was first
            self._index_video_id(name)
        except BaseException:
            self._call(f"drop {name}", lambda c: c.drop_collection(name))
            raise

    def _index_video_id(self, name: str) -> None:
        """delete / get_frames / has_video filter on video_id; a scalar index keeps them off full scans.

        INVERTED exists from Milvus 2.4 (and in Lite); a 2.3 server only takes Trie on a VARCHAR.
        Without either the filters still work, by scan, so the last resort is no scalar index.
        """
        kinds = ("INVERTED", "Trie")
        if not self.lite and self._call("server version", _server_minor) < (2, 4):
            kinds = ("Trie",)  # asking for INVERTED first would only log a refused RPC
        for kind in kinds:
            params = self.client.prepare_index_params()
            params.add_index(field_name="video_id", index_type=kind)
            try:
                self._call(f"index {name}.video_id", lambda c, p=params: c.create_index(name, p, sync=not self.lite))
                return
            except MilvusException as e:
                logging.getLogger(__name__).info("%s: %s index on video_id refused (%s)", name, kind, e.message)

    def _field(self, name: str, field: str) -> tuple[Any, int]:
        for f in self._call(f"describe {name}", lambda c: c.describe_collection(name))["fields"]:
            if f["name"] == field:
                return f["type"], int(f.get("params", {}).get("dim", 0))
        raise ConfigError(f"collection {name} has no field {field!r}; it was not created by AstraDup")

    def _check_dim(self, name: str, field: str, dim: int) -> None:
        _, have = self._field(name, field)
        if have != dim:
            raise ConfigError(
                f"collection {name} holds {have}-d vectors but {dim}-d were configured (another "
                f"embedder, or another vectors.projection). Run `astradup reindex` to rebuild the "
                f"collections from the shards, or use a new collection_prefix.")

    # ---------------------------------------------------------------- writes

    def drop_all(self) -> None:
        """Drop and re-create the three collections (``reindex`` refills them from the shards);
        collections of the auto-id layout come back keyed."""
        for name in (self.frames, self.phash, self.audio):
            if self._call(f"has {name}", lambda c, n=name: c.has_collection(n)):
                self._call(f"drop {name}", lambda c, n=name: c.drop_collection(n))
        self._phash_binary = self._open_collections()

    def upsert_video(self, f: VideoFeatures) -> None:
        """Replace every vector of ``f.video_id`` with those of ``f``."""
        self.upsert_many([f])

    def upsert_many(self, items: Sequence[VideoFeatures]) -> int:
        """Replace the vectors of many videos; returns videos written.

        Rows are upserted under ``"<video_id>/<row>"`` keys, then rows past each video's new
        count are deleted (a re-index with fewer frames). Idempotent, so safe to retry and safe
        with several writers: two jobs writing the same video leave it once, and a search meanwhile
        sees each row's old or new version, never neither (a plain delete-then-insert would show
        the video missing). Records that are not ``ok`` are skipped and leave existing vectors
        alone: a transient failure on re-index must not wipe the vectors of the last good run
        (the shards keep those features too). A video repeated in ``items`` keeps its last record.
        """
        latest: dict[str, VideoFeatures] = {}
        for f in items:
            if f.status == STATUS_OK:
                self._check(f)
                latest[f.video_id] = f
        if not latest:
            return 0
        frames: list[dict] = []
        codes: list[dict] = []
        audio: list[dict] = []
        counts: dict[str, dict[str, int]] = {name: {} for name in self._collections}
        for vid, f in latest.items():
            ts = np.asarray(f.timestamps, np.float32).reshape(-1).tolist()
            emb = np.asarray(f.embeddings, np.float32)
            frames.extend({"id": _pk(vid, i), "video_id": vid, "row": i, "t": t, "vector": v}
                          for i, (t, v) in enumerate(zip(ts, emb)))
            ph = np.asarray(f.phash, np.uint8) if self.phash_enabled else np.zeros((0, PHASH_BYTES), np.uint8)
            codes.extend({"id": _pk(vid, i), "video_id": vid, "row": i, "t": t, "code": c}
                         for i, (t, c) in enumerate(zip(ts, self._codes_to_field(ph))))
            win = np.asarray(f.audio_windows, np.float32).reshape(-1, 2).tolist()
            av = np.asarray(f.audio_vectors, np.float32)
            audio.extend({"id": _pk(vid, i), "video_id": vid, "row": i, "t_start": s, "t_end": e, "vector": v}
                         for i, ((s, e), v) in enumerate(zip(win, av)))
            counts[self.frames][vid] = len(emb)
            if self.phash_enabled:
                counts[self.phash][vid] = min(len(ts), len(ph))
            counts[self.audio][vid] = min(len(win), len(av))
        for name, rows in ((self.frames, frames), (self.phash, codes), (self.audio, audio)):
            if name not in counts:
                continue
            if name in self._legacy:
                self._replace_legacy(name, list(latest), rows)
                continue
            for i in range(0, len(rows), _INSERT_CHUNK):
                chunk = rows[i:i + _INSERT_CHUNK]
                self._call(f"upsert {name}", lambda c, n=name, r=chunk: c.upsert(n, r))
            self._delete_stale(name, counts[name])
        return len(latest)

    def _delete_stale(self, name: str, counts: dict[str, int]) -> None:
        """Delete rows at or past each video's new row count (left by a longer earlier version)."""
        items = list(counts.items())
        for i in range(0, len(items), _STALE_CHUNK):
            flt = " or ".join(f"(video_id == {quote(v)} and row >= {n})" for v, n in items[i:i + _STALE_CHUNK])
            self._call(f"delete stale rows of {name}", lambda c, f=flt: c.delete(name, filter=f))

    def _replace_legacy(self, name: str, ids: list[str], rows: list[dict]) -> None:
        """The auto-id layout's write: delete the videos' rows, insert the new ones (not idempotent:
        two writers interleaving duplicate rows, and so may a retried insert whose reply was lost)."""
        for i in range(0, len(ids), _DELETE_CHUNK):
            flt = _id_filter(ids[i:i + _DELETE_CHUNK])
            self._call(f"delete {name}", lambda c, f=flt: c.delete(name, filter=f))
        plain = [{k: v for k, v in r.items() if k not in ("id", "row")} for r in rows]
        for i in range(0, len(plain), _INSERT_CHUNK):
            chunk = plain[i:i + _INSERT_CHUNK]
            self._call(f"insert {name}", lambda c, r=chunk: c.insert(name, r))

    def _check(self, f: VideoFeatures) -> None:
        _check_id(f.video_id)
        t = len(np.asarray(f.timestamps).reshape(-1))
        emb, ph = np.asarray(f.embeddings), np.asarray(f.phash)
        if len(emb) != t or (t and (emb.ndim != 2 or emb.shape[1] != self.visual_dim)):
            raise ConfigError(f"{f.video_id}: embeddings {emb.shape} do not fit [{t}, {self.visual_dim}] "
                              f"(the embedder's dim must match the {self.frames} collection)")
        if len(ph) and (ph.shape != (t, PHASH_BYTES)):
            raise ValueError(f"{f.video_id}: phash {ph.shape} is not [{t}, {PHASH_BYTES}]")
        w = len(np.asarray(f.audio_windows).reshape(-1, 2))
        av = np.asarray(f.audio_vectors)
        if len(av) != w or (w and (av.ndim != 2 or av.shape[1] != self.audio_dim)):
            raise ConfigError(f"{f.video_id}: audio_vectors {av.shape} do not fit [{w}, {self.audio_dim}] "
                              f"(the audio embedder's dim must match the {self.audio} collection)")

    def _codes_to_field(self, codes: np.ndarray) -> list[Any]:
        """Packed pHash -> what the ``code`` field stores: bytes (binary) or +-1 floats (Lite)."""
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, PHASH_BYTES)
        if self._phash_binary:
            return [c.tobytes() for c in codes]
        return list(unpack_bits(codes) * 2.0 - 1.0)

    def delete_video(self, video_id: str) -> None:
        _check_id(video_id)
        self._delete_ids([video_id])

    def _delete_ids(self, ids: list[str]) -> None:
        for i in range(0, len(ids), _DELETE_CHUNK):
            flt = _id_filter(ids[i:i + _DELETE_CHUNK])
            for name in self._collections:
                self._call(f"delete {name}", lambda c, n=name: c.delete(n, filter=flt))

    # ---------------------------------------------------------------- reads

    def has_video(self, video_id: str) -> bool:
        flt = f"video_id == {quote(video_id)}"
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
        flt = "" if video_id is None else f"video_id == {quote(video_id)}"
        out = {}
        for key, name in (("frames", self.frames), ("phash", self.phash), ("audio", self.audio)):
            if name not in self._collections:
                out[key] = 0
                continue
            res = self._call(f"count {name}", lambda c, n=name: c.query(
                n, filter=flt, output_fields=["count(*)"], consistency_level="Strong"))
            out[key] = int(res[0]["count(*)"])
        return out

    def get_frames(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(t float32[T], vectors float32[T, D]) of one video sorted by t; empty if unknown."""
        rows = self._query_all(self.frames, f"video_id == {quote(video_id)}", ["t", "vector"])
        if not rows:
            return np.zeros((0,), np.float32), np.zeros((0, self.visual_dim), np.float32)
        t = np.asarray([r["t"] for r in rows], np.float32)
        v = np.asarray([r["vector"] for r in rows], np.float32).reshape(len(rows), self.visual_dim)
        order = np.argsort(t, kind="stable")
        return t[order], v[order]

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
            raise ConfigError("pHash codes are not indexed in this Milvus database (vectors.phash: auto keeps "
                              "them out of Milvus Lite, where only a float copy is possible); set vectors.phash: "
                              "on and run `astradup reindex` to search them")
        c = np.asarray(codes)
        if c.ndim != 2 or c.shape[1] != PHASH_BYTES or c.dtype != np.uint8:
            raise ValueError(f"phash queries must be uint8 [Q, {PHASH_BYTES}], got {c.dtype} {c.shape}")
        metric = "HAMMING" if self._phash_binary else "IP"
        hits = self._search(self.phash, "code", self._codes_to_field(c), k, exclude, metric, ["video_id", "t"])
        out = []
        for row in hits:
            res = []
            for h in row:
                d = float(h["distance"])
                hamming = round(d) if self._phash_binary else round((PHASH_BITS - d) / 2)
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
        flt = _exclude_filter(exclude)
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
        with self._client_lock:  # a reconnect in another thread must not hand out a client after this
            if self._closed:
                return
            self._closed = True
        try:
            self.client.close()
        finally:
            if self.lite:
                with _lite_lock:
                    left = _lite_refs.get(self.uri, 1) - 1
                    if left > 0:
                        _lite_refs[self.uri] = left
                    else:
                        _lite_refs.pop(self.uri, None)
                if left <= 0:
                    from milvus_lite.server_manager import server_manager_instance
                    server_manager_instance.release_server(self.uri)

    def __enter__(self) -> "VectorStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _server_minor(client: MilvusClient) -> tuple[int, int]:
    """(major, minor) of a Milvus server ("v2.3.5-lite" -> (2, 3)); unknown reads as new."""
    try:
        parts = str(client.get_server_version()).lstrip("v").split(".")
        return int(parts[0]), int(parts[1])
    except (MilvusException, ValueError, IndexError):
        return (99, 0)


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


def _index_pending(exc: BaseException) -> bool:
    """A load refused because the collection has no index yet (code 700): its creator is still
    building it."""
    return isinstance(exc, MilvusException) and (exc.code == 700 or "index not found" in str(exc.message).lower()
                                                  or "index doesn't exist" in str(exc.message).lower())


def _pk(video_id: str, row: int) -> str:
    """The primary key of a video's ``row``-th frame, code or window: the same on every writer."""
    return f"{video_id}/{row}"


def _check_id(video_id: str) -> None:
    if not video_id or len(video_id) > VIDEO_ID_MAX:
        raise ValueError(f"video_id must be 1..{VIDEO_ID_MAX} characters, got {video_id!r}")


def _id_filter(ids: Iterable[str]) -> str:
    return f"video_id in [{', '.join(quote(v) for v in ids)}]"


def _exclude_filter(exclude: Exclude) -> str:
    """The search filter that leaves out one video's rows or several videos' rows."""
    if not exclude:
        return ""
    if isinstance(exclude, str):
        return f"video_id != {quote(exclude)}"
    return f"video_id not in [{', '.join(quote(v) for v in sorted(exclude))}]"


def _as_queries(vectors: np.ndarray, dim: int, what: str) -> np.ndarray:
    q = np.asarray(vectors, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != dim:
        raise ConfigError(f"{what} queries are {q.shape}, the collection holds {dim}-d vectors")
    return np.ascontiguousarray(q)


__all__ = ["DEFAULT_AUDIO_DIM", "VectorStore", "is_lite_uri", "quote", "unpack_bits"]
