"""Parquet shards: the durable record of every indexed video (features + per-file outcome).

Milvus holds only what search needs; the shards hold everything, so the vector index can be
rebuilt (``reindex``) or re-scored without decoding a single video again. ``root`` goes through
fsspec, so it may be a local directory or ``s3://bucket/prefix`` (s3fs, ``storage_options``).

Layout::

    <root>/features/part-<utc>-<uuid8>.parquet   one file per write_features() call (FEATURES_SCHEMA)
    <root>/status/part-<utc>-<uuid8>.parquet     one file per status write (STATUS_SCHEMA)

Files are never rewritten: a re-index or a deletion appends, and readers take the latest row.
That keeps writers lock-free (several Ray workers may append at once) and a crash can only lose
the batch in flight, never corrupt what was there.

Several writers, several processes. A name is the writer's microsecond clock plus 8 random hex
digits, and a local file is published by first creating its name exclusively (``O_EXCL``), then
renaming the finished temp file over that empty placeholder: two writers that drew the same name
(same microsecond, same random part) keep both files, the second under a new name, where a plain
rename would silently drop the first. Readers skip empty files (a placeholder, or one a killed
writer left). Each writer's temp file is its own (pid and random part in the name). Readers
order rows by ``(at, file name, row)``, a total order every reader computes the same way, so
each process sees the same latest status per video whatever order it listed the files in.
Across machines that order is only as good as the clocks.

Damaged shards are quarantined, never fatal. Every shard read goes through
``ShardStore._guarded``: a file that cannot be read or does not hold what our writer writes
(truncated, overwritten, not Parquet, wrong columns) is logged once, recorded by path in the
quarantine (``stats()["shards_quarantined"]``, ``quarantined()``), left on disk untouched for the
operator, and skipped, so one bad file can no longer turn every status listing, feature load and
search into an error. What that costs: the videos whose newest features sit in a quarantined
shard read as missing (search drops them, their ids show in ``lost_ids()`` and a backfill over
the sources indexes them again); the rows of a quarantined status shard are unknown, so those
videos have no readable status and a backfill re-indexes them, and a tombstone that was in it
is lost (the video is live again until deleted again). A quarantined file whose size changes
(the operator restored it), or after ``QUARANTINE_RETRY_S`` (a transient storage error), is
read again.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import re
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from astradup.store.compact import (CODES_DIM, audio_mfcc_part, dequantise_rows, quantise_rows,
                                    rebuild_audio_vectors)
from astradup.records import STATUS_DELETED, STATUS_FAILED, STATUS_OK, VideoFeatures

PHASH_BYTES = 32  # 256-bit pHash per frame

FEATURES_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("uri", pa.string()),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("duration", pa.float64()),
    pa.field("fps", pa.float64()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("vcodec", pa.string()),
    pa.field("acodec", pa.string()),
    pa.field("container", pa.string()),
    pa.field("size", pa.int64()),
    pa.field("meta_json", pa.string()),
    pa.field("timestamps", pa.list_(pa.float32())),
    pa.field("emb_dim", pa.int32()),
    pa.field("embeddings", pa.list_(pa.float32())),  # layout 1 only (null in layout 2)
    pa.field("emb_q", pa.binary()),
    pa.field("phash", pa.binary()),
    pa.field("audio_windows", pa.list_(pa.float32())),
    pa.field("audio_dim", pa.int32()),
    pa.field("audio_vectors", pa.list_(pa.float32())),  # layout 1 only (null in layout 2)
    pa.field("audio_mfcc", pa.list_(pa.float16())),
    pa.field("chromaprint", pa.list_(pa.uint32())),
    pa.field("chromaprint_hz", pa.float64()),
    pa.field("indexed_at", pa.timestamp("us", tz="UTC"), nullable=False),
])
"""One row per video (written by :meth:`ShardStore.write_features`).

=============== ======================= =====================================================
column          type                    meaning
=============== ======================= =====================================================
video_id        string                  content hash of the file (the key everywhere)
uri             string                  where the file was read from
status          string                  ``ok`` | ``failed`` (a failed file is still a row)
error           string                  why it failed ("" when ok)
duration        float64                 meta["duration"] seconds (null when unknown)
fps             float64                 meta["fps"] native frame rate (null when unknown)
width, height   int32                   meta["width"], meta["height"] pixels
vcodec, acodec  string                  meta["vcodec"], meta["acodec"] codec names
container       string                  meta["container"] format name
size            int64                   meta["size"] bytes of the source file
meta_json       string                  every other meta key as a JSON object
timestamps      list<float32>           [T] seconds of each sampled frame
emb_dim         int32                   D; ``embeddings`` is [T, D] row-major, flattened
embeddings      list<float32>           layout 1 (older shards): T*D values, L2-normalised rows
emb_q           binary                  layout 2: T*D int8 values, each row scaled to +-127 (read
                                        back L2-normalised; store/compact.py). Binary, since
                                        Parquet stores a list<int8> as 4-byte INT32s
phash           binary                  T*32 bytes: [T, 32] uint8 packbits, 256 bits a frame
audio_windows   list<float32>           W*2 values: [W, 2] (start, end) seconds
audio_dim       int32                   Da; ``audio_vectors`` is [W, Da] flattened
audio_vectors   list<float32>           layout 1: W*Da values, L2-normalised rows
audio_mfcc      list<float16>           layout 2: the MFCC part of each window vector (Da - 192
                                        values a window); the rest is rebuilt from ``chromaprint``
chromaprint     list<uint32>            [N] raw Chromaprint sub-fingerprints
chromaprint_hz  float64                 sub-fingerprints per second
indexed_at      timestamp[us, UTC]      when the row was written (same for a whole shard)
=============== ======================= =====================================================

Matrices are flattened into one list with the width in a separate column because a flat
``list<float32>`` converts to numpy with one zero-copy buffer view per column chunk, where a
nested list or fixed-size list of lists costs a Python object per row or per frame. Rows of a
shard are sorted by ``video_id`` and written in small row groups, so the row-group statistics
let a ``video_id`` filter read only the group that holds the video.
"""

STATUS_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("uri", pa.string()),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("size", pa.int64()),
    pa.field("duration", pa.float64()),
    pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
])
"""One row per outcome: ``ok`` | ``failed`` (from write_features) or ``deleted`` (tombstone).

The latest row per video_id (by ``at``, ties to the later file, then the later row) is the
video's state; ``latest_status()`` answers "which files failed and why" for a whole backfill.
"""

_STATUSES = (STATUS_OK, STATUS_FAILED, STATUS_DELETED)
_PART_RE = re.compile(r"^part-\d{8}T\d{12}Z-[0-9a-f]{8}\.parquet$")
_TMP_PREFIX = ".tmp-"  # pyarrow.dataset also ignores names starting with "." by default
_ROW_GROUP_BYTES = 8 << 20  # small groups so one video's read skips the rest of a shard
# Float vectors and pHash bits are near-incompressible: zstd saved ~7% on them but made reads
# ~5x slower (100 videos x 300 x 512 floats: 1.16 s zstd vs 0.24 s plain), so they go raw.
_RAW_COLUMNS = frozenset({"embeddings", "phash", "audio_vectors", "timestamps", "audio_windows"})
_FEATURES_COMPRESSION = {n: ("none" if n in _RAW_COLUMNS else "zstd") for n in FEATURES_SCHEMA.names}
# Dictionary pages only pay on repeated values (ids, codec names). On near-unique floats pyarrow
# first builds a dictionary as large as the data, then falls back to plain pages, and the file
# keeps both: the float32 embeddings took 10.7 MB/h instead of 7.4 (docs/performance.md).
_DICT_COLUMNS = [n for n in FEATURES_SCHEMA.names
                 if n in ("video_id", "uri", "status", "error", "vcodec", "acodec", "container")]

# Promoted meta keys: (column, python type of the column, value types accepted without loss).
_META_COLUMNS: tuple[tuple[str, type, tuple[type, ...]], ...] = (
    ("duration", float, (float, int)),
    ("fps", float, (float, int)),
    ("width", int, (int,)),
    ("height", int, (int,)),
    ("vcodec", str, (str,)),
    ("acodec", str, (str,)),
    ("container", str, (str,)),
    ("size", int, (int,)),
)
_INT32_MAX = 2**31 - 1

log = logging.getLogger(__name__)
# What a damaged shard raises: pyarrow's own errors (ArrowInvalid "magic bytes not found" on a
# truncated file is a ValueError), OSError for a short read or a bad compressed page, and what our
# own row decoding raises on values that do not fit (a ValueError from _matrix, a KeyError...).
_UNREADABLE: tuple[type[BaseException], ...] = (pa.ArrowException, OSError, ValueError, KeyError,
                                                TypeError, IndexError, UnicodeDecodeError)
QUARANTINE_RETRY_S = 300.0  # a quarantined shard is read again after this (the error may have been transient)
_logged_quarantine: set[tuple[str, int]] = set()  # (path, size) already logged by this process
_logged_lock = threading.Lock()
# One lock per shards root for delete's check-then-tombstone, shared by every ShardStore of the root in
# this process (the serve replica and a CLI in one interpreter may hold different instances).
_delete_locks: dict[str, threading.Lock] = {}
_delete_locks_guard = threading.Lock()
_DELETE_LOCK_FILE = ".delete.lock"  # in <root>/status/; a dot name, so no listing takes it for a shard

_clock_lock = threading.Lock()
_last_us = 0


def _now_us() -> int:
    """UTC microseconds, strictly increasing within the process.

    Strictness matters: a tombstone written right after an index in the same microsecond
    must still sort after it, and file names (which embed this stamp) must order like writes.
    """
    global _last_us
    with _clock_lock:
        us = time.time_ns() // 1000
        _last_us = us if us > _last_us else _last_us + 1
        return _last_us


def _part_name(us: int) -> str:
    stamp = datetime.fromtimestamp(us / 1e6, tz=timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"


_NAME_TRIES = 8  # fresh names to draw before a clash is treated as a bug, not bad luck


def _publish(tmp: str, directory: str, name: str, us: int) -> str:
    """Give the finished temp file its part name without ever replacing an existing file.

    The name is claimed with ``O_CREAT | O_EXCL`` (an empty file, which readers skip) and the temp
    file renamed over the claim. A bare ``os.replace`` would silently drop another writer's shard
    of the same name, its status rows with it; here the clash shows and a fresh name is drawn.
    """
    for _ in range(_NAME_TRIES):
        final = f"{directory}/{name}"
        try:
            fd = os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            name = _part_name(us)
            continue
        os.close(fd)
        try:
            os.replace(tmp, final)
        except BaseException:
            os.unlink(final)  # our own empty claim; nothing else can be at that name
            raise
        return final
    raise FileExistsError(f"{directory}: {_NAME_TRIES} part names in a row were taken")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"meta value of type {type(obj).__name__} is not JSON serialisable")


def _split_meta(meta: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Meta keys with a column go to that column when they fit it; everything else to JSON.

    A value that does not fit (say ``fps`` given as the string "30000/1001") stays in the JSON,
    so no information is lost or coerced into something it was not.
    """
    cols: dict[str, Any] = {}
    rest = dict(meta)
    for name, py, accepted in _META_COLUMNS:
        if name not in rest:
            continue
        v = rest[name]
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, accepted):
            continue
        if py is int and name != "size" and not -_INT32_MAX <= v <= _INT32_MAX:
            continue
        cols[name] = py(v)
        del rest[name]
    return cols, json.dumps(rest, default=_json_default, sort_keys=True)


def _feature_row(f: VideoFeatures) -> dict[str, Any]:
    if f.status not in (STATUS_OK, STATUS_FAILED):
        raise ValueError(f"{f.video_id}: features status must be ok or failed, got {f.status!r}")
    emb = np.ascontiguousarray(f.embeddings, dtype=np.float32)
    ts = np.ascontiguousarray(f.timestamps, dtype=np.float32).reshape(-1)
    ph = np.ascontiguousarray(f.phash, dtype=np.uint8)
    aw = np.ascontiguousarray(f.audio_windows, dtype=np.float32)
    av = np.ascontiguousarray(f.audio_vectors, dtype=np.float32)
    if emb.ndim != 2 or len(emb) != len(ts):
        raise ValueError(f"{f.video_id}: embeddings {emb.shape} do not match {len(ts)} timestamps")
    if ph.size and (ph.ndim != 2 or ph.shape[1] != PHASH_BYTES or len(ph) != len(ts)):
        raise ValueError(f"{f.video_id}: phash {ph.shape} is not [{len(ts)}, {PHASH_BYTES}]")
    if aw.size and (aw.ndim != 2 or aw.shape[1] != 2):
        raise ValueError(f"{f.video_id}: audio_windows {aw.shape} is not [W, 2]")
    if av.ndim != 2 or len(av) != len(aw.reshape(-1, 2)):
        raise ValueError(f"{f.video_id}: audio_vectors {av.shape} do not match audio_windows {aw.shape}")
    cols, meta_json = _split_meta(f.meta)
    row = {name: None for name, _, _ in _META_COLUMNS}
    row.update(cols)
    row.update(
        video_id=f.video_id, uri=f.uri, status=f.status, error=f.error, meta_json=meta_json,
        timestamps=ts, emb_dim=emb.shape[1], embeddings=None, emb_q=quantise_rows(emb).tobytes(),
        phash=ph.tobytes(), audio_windows=aw.reshape(-1), audio_dim=av.shape[1],
        **_audio_columns(f, aw, av),
        chromaprint=np.ascontiguousarray(f.chromaprint, dtype=np.uint32).reshape(-1),
        chromaprint_hz=float(f.chromaprint_hz),
    )
    return row


def _audio_columns(f: VideoFeatures, windows: np.ndarray, vectors: np.ndarray) -> dict[str, Any]:
    """Layout 2 (MFCC part only) when rebuilding from the Chromaprint codes gives the vectors back,
    else the full vectors: records built some other way (tests, other audio embedders) round-trip
    unchanged, and a change to the audio features can never silently corrupt stored ones."""
    if len(vectors) and vectors.shape[1] > CODES_DIM:
        part = audio_mfcc_part(vectors)
        back = rebuild_audio_vectors(f.chromaprint, f.chromaprint_hz, windows, part)
        if back.shape == vectors.shape and float(np.abs(back - vectors).max()) < 2e-3:
            return {"audio_vectors": None, "audio_mfcc": part.reshape(-1)}
    return {"audio_vectors": vectors.reshape(-1), "audio_mfcc": None}


def _list_column(table: pa.Table, name: str, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, values) of a list column, so rows slice out of one numpy buffer."""
    arr = table.column(name).combine_chunks()
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy(zero_copy_only=False)
    return offsets, values.astype(dtype, copy=False)


def _matrix(flat: np.ndarray, width: int) -> np.ndarray:
    """Flat row-major values -> an owned [n, width] array (width 0 gives [0, 0])."""
    rows = len(flat) // width if width else 0
    if rows * width != len(flat):
        raise ValueError(f"corrupt shard row: {len(flat)} values do not fill rows of width {width}")
    return flat.reshape(rows, width).copy()


def _rows_to_features(table: pa.Table, rows: list[int] | None = None) -> list[VideoFeatures]:
    """Arrow rows (all, or the given row numbers) -> records.

    Arrays are copied so callers get writeable arrays that do not pin the scanned table;
    selecting rows here is much cheaper than ``Table.take`` on large list columns.
    """
    if table.num_rows == 0 or rows == []:
        return []
    plain = {c: table.column(c).to_pylist() for c in (
        "video_id", "uri", "status", "error", "meta_json", "emb_dim", "audio_dim", "chromaprint_hz",
        *(name for name, _, _ in _META_COLUMNS))}
    ts_o, ts_v = _list_column(table, "timestamps", np.float32)
    em_o, em_v = _list_column(table, "embeddings", np.float32)
    emb_q = table.column("emb_q").to_pylist()
    aw_o, aw_v = _list_column(table, "audio_windows", np.float32)
    av_o, av_v = _list_column(table, "audio_vectors", np.float32)
    am_o, am_v = _list_column(table, "audio_mfcc", np.float16)
    cp_o, cp_v = _list_column(table, "chromaprint", np.uint32)
    phash = table.column("phash").to_pylist()
    out = []
    for i in (range(table.num_rows) if rows is None else rows):
        meta = json.loads(plain["meta_json"][i] or "{}")
        for name, _, _ in _META_COLUMNS:
            if plain[name][i] is not None:
                meta[name] = plain[name][i]
        d, da = int(plain["emb_dim"][i] or 0), int(plain["audio_dim"][i] or 0)
        if emb_q[i] is not None or em_o[i + 1] == em_o[i]:  # layout 2 (or no frames at all)
            emb = dequantise_rows(_matrix(np.frombuffer(emb_q[i] or b"", np.int8), d))
        else:
            emb = _matrix(em_v[em_o[i]:em_o[i + 1]], d)
        windows = _matrix(aw_v[aw_o[i]:aw_o[i + 1]], 2)
        chroma = cp_v[cp_o[i]:cp_o[i + 1]].copy()
        hz = float(plain["chromaprint_hz"][i] or 0.0)
        if av_o[i + 1] > av_o[i] or len(windows) == 0:  # layout 1, or no audio windows
            audio_vectors = _matrix(av_v[av_o[i]:av_o[i + 1]], da)
        else:
            audio_vectors = rebuild_audio_vectors(
                chroma, hz, windows, _matrix(am_v[am_o[i]:am_o[i + 1]], da - CODES_DIM))
        out.append(VideoFeatures(
            video_id=plain["video_id"][i], uri=plain["uri"][i] or "",
            timestamps=ts_v[ts_o[i]:ts_o[i + 1]].copy(),
            embeddings=emb,
            phash=_matrix(np.frombuffer(phash[i] or b"", np.uint8), PHASH_BYTES),
            audio_windows=windows,
            audio_vectors=audio_vectors,
            chromaprint=chroma,
            chromaprint_hz=hz,
            meta=meta, status=plain["status"][i], error=plain["error"][i] or "",
        ))
    return out


@dataclass(frozen=True)
class _Key:
    """Total order of writes: time, then file name (embeds the time), then row in file."""

    at: int
    file: str
    row: int

    def __lt__(self, other: "_Key") -> bool:
        return (self.at, posixpath.basename(self.file), self.row) < (
            other.at, posixpath.basename(other.file), other.row)


class ShardStore:
    """Append-only Parquet store of VideoFeatures and status rows.

    Reads keep an in-memory index (video_id -> newest ok row's shard; video_id -> latest
    status), built from the narrow key columns only and refreshed incrementally whenever a
    listing shows new shards, so repeated ``load_features`` calls read one row group each.
    """

    def __init__(self, root: str, storage_options: dict | None = None) -> None:
        self.root = root
        self.fs, path = fsspec.core.url_to_fs(root, **(storage_options or {}))
        self._local = "file" in _protocols(self.fs)
        self._path = os.path.abspath(path) if self._local else path.rstrip("/")
        # pyarrow's own local filesystem is faster than going through the fsspec handler.
        self._pafs = pafs.LocalFileSystem() if self._local else pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))
        self._lock = threading.RLock()
        self._feat_files: dict[str, int] = {}  # path -> bytes, shards already indexed
        self._feat_best: dict[str, _Key] = {}  # video_id -> newest ok features row
        self._status_files: dict[str, int] = {}
        self._status_latest: dict[str, tuple[_Key, dict[str, Any]]] = {}
        # path -> (size when it failed, monotonic time it failed, reason): shards skipped as damaged.
        self._quarantine: dict[str, tuple[int, float, str]] = {}
        self._feat_stale = False  # a features shard failed at read time: rebuild the index next refresh

    # ---------------------------------------------------------------- quarantine

    def _guarded(self, path: str, size: int, read: Callable[[], Any]) -> Any | None:
        """Run one read of the shard at ``path``; on a damaged file quarantine it and return None.

        The one place that decides a shard is unreadable, so status listings, feature loads and
        audits all degrade the same way: the file is logged (once per path and size), recorded,
        never deleted or moved (it is the operator's evidence and maybe their only copy), and the
        caller goes on without it. A file that vanished meanwhile (FileNotFoundError) is not
        damage: it is skipped and the next listing no longer shows it.
        """
        try:
            return read()
        except FileNotFoundError:
            return None
        except _UNREADABLE as e:
            self._quarantine_file(path, size, f"{type(e).__name__}: {e}")
            return None

    def _quarantine_file(self, path: str, size: int, reason: str) -> None:
        reason = reason.replace("\n", " ")[:500]
        with self._lock:
            self._quarantine[path] = (size, time.monotonic(), reason)
        with _logged_lock:
            first = (path, size) not in _logged_quarantine
            _logged_quarantine.add((path, size))
        if first:
            log.error("shard quarantined (left on disk, skipped by every read): %s: %s", path, reason,
                      extra={"stage": "shards", "shard": path})

    def _skip_quarantined(self, path: str, size: int) -> bool:
        """True while a listed file is a known-bad shard: same size and not yet due for a retry."""
        q = self._quarantine.get(path)
        return q is not None and q[0] == size and time.monotonic() - q[1] < QUARANTINE_RETRY_S

    def quarantined(self, refresh: bool = True) -> dict[str, str]:
        """Shard path -> why it was quarantined, for the damaged files the last reads skipped.

        ``refresh=False`` answers from what the reads so far found, without listing the storage
        (cheap enough for a health probe)."""
        if refresh:
            self._refresh()
        with self._lock:
            return {p if self._local else self._url(p): r for p, (_, _, r) in sorted(self._quarantine.items())}

    def lost_ids(self) -> set[str]:
        """Ids whose latest status is ok but whose features no readable shard holds.

        Empty unless a features shard is quarantined: their newest features sat in it. A backfill
        treats them as not done (``pipeline.index``), so re-running it over the sources restores them.
        """
        self._refresh()
        with self._lock:
            if not self._quarantine:
                return set()
            return {vid for vid, (_, row) in self._status_latest.items()
                    if row["status"] == STATUS_OK and vid not in self._feat_best}

    # ---------------------------------------------------------------- writing

    def write_features(self, batch: list[VideoFeatures]) -> str:
        """Write one shard for the batch plus its status rows; returns the shard path.

        An empty batch writes nothing and returns "" (a pipeline flush with nothing pending).
        """
        if not batch:
            return ""
        rows = sorted((_feature_row(f) for f in batch), key=lambda r: r["video_id"])
        us = _now_us()
        for r in rows:
            r["indexed_at"] = us
        table = pa.Table.from_pylist(rows, schema=FEATURES_SCHEMA)
        avg = max(1, table.nbytes // max(1, table.num_rows))
        path = self._write(table, "features", us, row_group_size=max(1, _ROW_GROUP_BYTES // avg),
                           compression=_FEATURES_COMPRESSION, use_dictionary=_DICT_COLUMNS)
        self.write_status([{
            "video_id": f.video_id, "uri": f.uri, "status": f.status, "error": f.error,
            "size": _as_int(f.meta.get("size")), "duration": _as_float(f.meta.get("duration")),
            "at": us,
        } for f in batch])
        return path

    def write_status(self, rows: list[dict]) -> str:
        """Append status rows (video_id, uri, status, error, size, duration, at); returns the file.

        ``at`` defaults to now; it may be a datetime (naive = UTC) or UTC epoch microseconds.
        """
        if not rows:
            return ""
        now = _now_us()
        clean = []
        for r in rows:
            if r.get("status") not in _STATUSES:
                raise ValueError(f"{r.get('video_id')}: status must be one of {_STATUSES}, got {r.get('status')!r}")
            if not r.get("video_id"):
                raise ValueError(f"status row without video_id: {r!r}")
            at = r.get("at", now)
            if isinstance(at, datetime):
                if at.tzinfo is None:  # naive means UTC here, never the host's local time
                    at = at.replace(tzinfo=timezone.utc)
                at = round(at.timestamp() * 1_000_000)
            clean.append({"video_id": r["video_id"], "uri": r.get("uri") or "", "status": r["status"],
                          "error": r.get("error") or "", "size": _as_int(r.get("size")),
                          "duration": _as_float(r.get("duration")), "at": int(at)})
        return self._write(pa.Table.from_pylist(clean, schema=STATUS_SCHEMA), "status", now)

    def mark_deleted(self, video_id: str, uri: str = "") -> None:
        """Tombstone: the features stay on disk (auditable) but are no longer returned.

        Unconditional; a delete that must happen once (the API, the CLI) checks the status and
        writes this inside ``delete_guard()`` (``Catalog.remove``)."""
        self.write_status([{"video_id": video_id, "uri": uri, "status": STATUS_DELETED}])

    @contextlib.contextmanager
    def delete_guard(self) -> Iterator[None]:
        """Serialise check-then-tombstone on this shards root, so one id is deleted exactly once.

        Without it three concurrent DELETEs of one id all saw it ``ok`` and wrote three tombstones.
        A lock per root is shared by every ShardStore of this process, and on a local root an
        exclusive ``flock`` on ``status/.delete.lock`` extends it to other processes (a CLI
        ``delete`` next to the server). An object store has no such lock: there two processes
        deleting the same id at the same instant can still both write a tombstone (harmless to
        readers: the state is "deleted" either way).
        """
        with _delete_locks_guard:
            lock = _delete_locks.setdefault(self._path, threading.Lock())
        with lock:
            if not self._local:
                yield
                return
            import fcntl

            directory = f"{self._path}/status"
            os.makedirs(directory, exist_ok=True)
            fd = os.open(f"{directory}/{_DELETE_LOCK_FILE}", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing drops the flock

    def status_of(self, video_id: str) -> dict | None:
        """The latest status row of one video (``at`` as a UTC datetime), None when it has none."""
        self._refresh()
        with self._lock:
            got = self._status_latest.get(video_id)
        if got is None:
            return None
        return {**got[1], "at": datetime.fromtimestamp(got[1]["at"] / 1e6, tz=timezone.utc)}

    def _write(self, table: pa.Table, kind: str, us: int, row_group_size: int | None = None,
               compression: str | dict[str, str] = "zstd",
               use_dictionary: bool | list[str] = True) -> str:
        """Publish a whole file or nothing.

        Local: write a dot-prefixed temp name in the same directory, claim the part name with an
        exclusive create, then rename over the claim (atomic on POSIX), so a killed writer leaves
        only a temp file or an empty claim, both of which readers skip, and no writer ever
        replaces another's file. Object
        stores (s3): an object becomes visible only when its upload completes, and a rename
        there is a copy, so the final key is written directly.
        """
        directory = f"{self._path}/{kind}"
        name = _part_name(us)
        if self._local:
            os.makedirs(directory, exist_ok=True)
            # Private to this writer: another process drawing the same part name must not share it.
            tmp = f"{directory}/{_TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{name}"
            try:
                pq.write_table(table, tmp, filesystem=self._pafs, row_group_size=row_group_size,
                               compression=compression,
                               use_dictionary=use_dictionary)
                final = _publish(tmp, directory, name, us)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            return final
        final = f"{directory}/{name}"
        for _ in range(_NAME_TRIES):
            # An object store has no create-if-absent here; checking first narrows a clash (which
            # needs the same microsecond and the same 32 random bits) to the check-to-put window.
            if not self.fs.exists(final):
                break
            final = f"{directory}/{_part_name(us)}"
        pq.write_table(table, final, filesystem=self._pafs, row_group_size=row_group_size,
                       compression=compression, use_dictionary=use_dictionary)
        return self._url(final)

    def _url(self, path: str) -> str:
        protocol = _protocols(self.fs)[0]
        return f"{protocol}://{path}"

    # ---------------------------------------------------------------- index

    def _list(self, kind: str) -> dict[str, int]:
        directory = f"{self._path}/{kind}"
        self.fs.invalidate_cache(directory)  # s3fs caches listings; new shards must show up
        try:
            entries = self.fs.ls(directory, detail=True)
        except FileNotFoundError:
            return {}
        out = {}
        for e in entries:
            name = e["name"].rstrip("/")
            # An empty part file is a writer's claim on the name, not yet (or never) filled.
            if e.get("type") == "file" and _PART_RE.match(posixpath.basename(name)) and e.get("size"):
                out[name if not self._local else os.path.abspath(name)] = int(e.get("size") or 0)
        return out

    def _refresh(self) -> None:
        """Index shards that appeared since the last call (only their key columns are read)."""
        with self._lock:
            feats = self._list("features")
            stats = self._list("status")
            listed = {**feats, **stats}
            for path in [p for p in self._quarantine if p not in listed]:
                del self._quarantine[path]  # the operator removed it: nothing left to report
            # Shards removed (compaction) or changed size (files are never rewritten, so a new size
            # means a damaged or restored file), or one failed at read time: rebuild from scratch.
            if self._feat_stale or _changed(self._feat_files, feats):
                self._feat_files, self._feat_best, self._feat_stale = {}, {}, False
            for path in sorted(set(feats) - set(self._feat_files)):
                if self._skip_quarantined(path, feats[path]):
                    continue
                keys = self._guarded(path, feats[path], lambda: _feature_keys(pq.read_table(
                    path, columns=["video_id", "status", "indexed_at"], filesystem=self._pafs)))
                if keys is None:
                    continue
                self._quarantine.pop(path, None)
                for i, (vid, st, at) in enumerate(keys):
                    if st != STATUS_OK:
                        continue
                    key = _Key(at, path, i)
                    cur = self._feat_best.get(vid)
                    if cur is None or cur < key:
                        self._feat_best[vid] = key
                self._feat_files[path] = feats[path]

            if _changed(self._status_files, stats):
                self._status_files, self._status_latest = {}, {}
            for path in sorted(set(stats) - set(self._status_files)):
                if self._skip_quarantined(path, stats[path]):
                    continue
                rows = self._guarded(path, stats[path], lambda: _status_rows(pq.read_table(
                    path, columns=STATUS_SCHEMA.names, filesystem=self._pafs)))
                if rows is None:
                    continue
                self._quarantine.pop(path, None)
                for i, row in enumerate(rows):
                    key = _Key(row["at"], path, i)
                    cur = self._status_latest.get(row["video_id"])
                    if cur is None or cur[0] < key:
                        self._status_latest[row["video_id"]] = (key, row)
                self._status_files[path] = stats[path]

    def _live(self, video_id: str) -> _Key | None:
        """Newest ok features row, unless a later tombstone removed the video."""
        key = self._feat_best.get(video_id)
        if key is None:
            return None
        st = self._status_latest.get(video_id)
        if st is not None and st[1]["status"] == STATUS_DELETED and st[0].at >= key.at:
            return None
        return key

    # ---------------------------------------------------------------- reading

    def latest_status(self) -> dict[str, dict]:
        """video_id -> its latest status row (``at`` as a UTC datetime)."""
        self._refresh()
        with self._lock:
            return {vid: {**row, "at": datetime.fromtimestamp(row["at"] / 1e6, tz=timezone.utc)}
                    for vid, (_, row) in self._status_latest.items()}

    def load_features(self, video_ids: Iterable[str]) -> dict[str, VideoFeatures]:
        """Latest ok features per id; ids unknown, failed-only or deleted are absent."""
        self._refresh()
        with self._lock:
            wanted = {vid: k for vid in set(video_ids) if (k := self._live(vid)) is not None}
        return self._read(wanted)

    def iter_features(self, batch_size: int = 100) -> Iterator[list[VideoFeatures]]:
        """Every live video, a shard at a time, so memory stays at one shard's worth."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self._refresh()
        with self._lock:
            by_file: dict[str, dict[str, _Key]] = defaultdict(dict)
            for vid in self._feat_best:
                if (k := self._live(vid)) is not None:
                    by_file[k.file][vid] = k
        pending: list[VideoFeatures] = []
        for path in sorted(by_file, key=posixpath.basename):
            got = self._read(by_file[path])
            pending.extend(got[v] for v in sorted(got))
            while len(pending) >= batch_size:
                yield pending[:batch_size]
                pending = pending[batch_size:]
        if pending:
            yield pending

    def _read(self, wanted: dict[str, _Key]) -> dict[str, VideoFeatures]:
        """Read exactly the indexed rows: a dataset scan filtered on video_id (row groups whose
        id range misses are skipped) over only the shards that hold them.

        When the scan fails, one of those shards is damaged and the scan cannot say which: each is
        then read on its own through ``_guarded``, and the videos of the bad one read as missing
        (the caller gets the others; search drops the missing ones) rather than failing the call."""
        if not wanted:
            return {}
        files = sorted({k.file for k in wanted.values()})
        try:
            return self._scan(files, wanted)
        except _UNREADABLE:
            pass
        out: dict[str, VideoFeatures] = {}
        for path in files:
            part = {vid: k for vid, k in wanted.items() if k.file == path}
            got = self._guarded(path, self._feat_files.get(path, -1),
                                lambda: self._scan([path], part))  # noqa: B023 (called at once)
            if got is None:
                self._drop_features_shard(path)
                continue
            out.update(got)
        return out

    def _scan(self, files: list[str], wanted: dict[str, _Key]) -> dict[str, VideoFeatures]:
        dataset = ds.dataset(files, format="parquet", filesystem=self._pafs, schema=FEATURES_SCHEMA)
        table = dataset.to_table(
            columns=[*FEATURES_SCHEMA.names, "__filename"],
            filter=pc.field("video_id").isin(list(wanted)) & (pc.field("status") == STATUS_OK))
        fnames = table.column("__filename").to_pylist()
        vids = table.column("video_id").to_pylist()
        keep: dict[str, int] = {}
        for i, (vid, fn) in enumerate(zip(vids, fnames)):
            if _same_path(fn, wanted[vid].file):
                keep[vid] = i  # later rows of the same file win, as in the index
        return {f.video_id: f for f in _rows_to_features(table, sorted(keep.values()))}

    def _drop_features_shard(self, path: str) -> None:
        """Forget a features shard that failed at read time: its videos read as missing now, and
        the next refresh rebuilds the index without it (an older readable copy of a video, if any,
        then serves again)."""
        with self._lock:
            self._feat_best = {vid: k for vid, k in self._feat_best.items() if k.file != path}
            self._feat_files.pop(path, None)
            self._feat_stale = True

    def read_shard(self, path: str) -> list[VideoFeatures]:
        """Every row of one features shard, failed ones included (audit / debugging).

        A damaged shard is quarantined as on any other read and reported as a ValueError naming
        it (an audit asked for this file, so silence would mislead); a missing one raises
        FileNotFoundError."""
        fs_path = path.split("://", 1)[1] if "://" in path else path
        key = os.path.abspath(fs_path) if self._local else fs_path
        size = int(self.fs.size(fs_path))
        rows = self._guarded(key, size, lambda: _rows_to_features(
            pq.read_table(fs_path, filesystem=self._pafs, schema=FEATURES_SCHEMA)))
        if rows is None:
            reason = self._quarantine.get(key, (0, 0.0, "vanished while read"))[2]
            raise ValueError(f"{path}: damaged shard, quarantined: {reason}")
        return rows

    def shard_paths(self) -> list[str]:
        """Published features shards, oldest first."""
        self._refresh()
        with self._lock:
            files = sorted(self._feat_files, key=posixpath.basename)
        return files if self._local else [self._url(f) for f in files]

    def stats(self) -> dict[str, int]:
        """Counts by latest status, live videos, shard files and bytes on storage.

        ``shards`` / ``status_shards`` / ``bytes`` count readable shards only; damaged ones are
        ``shards_quarantined`` (which: ``quarantined()``), and ``videos_unreadable`` are the ok
        videos whose features only a quarantined shard held (``lost_ids()``)."""
        self._refresh()
        with self._lock:
            counts = {s: 0 for s in _STATUSES}
            for _, row in self._status_latest.values():
                counts[row["status"]] += 1
            return {
                "videos_ok": counts[STATUS_OK], "videos_failed": counts[STATUS_FAILED],
                "videos_deleted": counts[STATUS_DELETED],
                "videos_live": sum(1 for v in self._feat_best if self._live(v) is not None),
                "shards": len(self._feat_files), "status_shards": len(self._status_files),
                "bytes": sum(self._feat_files.values()) + sum(self._status_files.values()),
                "shards_quarantined": len(self._quarantine),
                "videos_unreadable": 0 if not self._quarantine else sum(
                    1 for v, (_, row) in self._status_latest.items()
                    if row["status"] == STATUS_OK and v not in self._feat_best),
            }


def _changed(cached: dict[str, int], listed: dict[str, int]) -> bool:
    """Whether a shard the index holds was removed or changed size since it was read."""
    return any(listed.get(path) != size for path, size in cached.items())


def _feature_keys(t: pa.Table) -> list[tuple[str, str, int]]:
    """(video_id, status, indexed_at us) per row of a features shard's key columns.

    Raises ValueError when they are not what ``write_features`` writes (a null id or time, an
    unknown status, a column of another type): such a file is not one of ours, or is damaged."""
    ids = t.column("video_id")
    stat = t.column("status")
    if not pa.types.is_string(ids.type) or not pa.types.is_string(stat.type):
        raise ValueError(f"video_id / status columns are {ids.type} / {stat.type}, not strings")
    if not pa.types.is_timestamp(t.column("indexed_at").type):
        raise ValueError(f"indexed_at column is {t.column('indexed_at').type}, not a timestamp")
    ats = pc.cast(t.column("indexed_at"), pa.int64())
    if ids.null_count or ats.null_count:
        raise ValueError("null video_id or indexed_at")
    vids, sts = ids.to_pylist(), stat.to_pylist()
    if not set(sts) <= {STATUS_OK, STATUS_FAILED}:
        raise ValueError(f"unknown features status in {sorted(map(str, set(sts)))[:5]}")
    return list(zip(vids, sts, ats.to_pylist()))


def _status_rows(t: pa.Table) -> list[dict[str, Any]]:
    """The rows of a status shard (``at`` as UTC epoch microseconds), checked like ``_feature_keys``."""
    t = t.select(STATUS_SCHEMA.names).cast(STATUS_SCHEMA)
    t = t.set_column(t.schema.get_field_index("at"), "at", pc.cast(t.column("at"), pa.int64()))
    if t.column("video_id").null_count or t.column("at").null_count or t.column("status").null_count:
        raise ValueError("null video_id, status or at")
    rows = t.to_pylist()
    bad = {r["status"] for r in rows} - set(_STATUSES)
    if bad:
        raise ValueError(f"unknown status {sorted(bad)[:5]}")
    return rows


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    p = fs.protocol
    return (p,) if isinstance(p, str) else tuple(p)


def _same_path(a: str, b: str) -> bool:
    return a == b or a.lstrip("/") == b.lstrip("/")


def _as_int(v: Any) -> int | None:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    return None


def _as_float(v: Any) -> float | None:
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return float(v)
    return None


__all__ = ["FEATURES_SCHEMA", "STATUS_SCHEMA", "ShardStore"]
