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

Finding new shards, and what a query costs (nothing per query grows with the library). Each
process holds a ``CatalogIndex`` (store/catalog_index.py: video_id -> shard, row and row group of
its newest ok features, and its latest status, in numpy columns) built from the key columns of
each shard once. A query (``load_features``, ``status_of(fresh=False)``, ``statuses_of``) is then
index lookups, a byte-capped LRU of decoded records (``catalog.feature_cache_mb``), and one read
per shard of only the row groups that hold the misses. New shards are found incrementally:

* Names are ``part-<utc us>-<8 hex>``, time ordered and never rewritten, so a refresh lists only
  the names after a watermark (the newest stamp seen) - local: one ``scandir`` compared by name
  with no Parquet read; S3: ``ListObjectsV2`` with ``StartAfter``, one request when nothing is
  new, where the old code LISTed every shard and compared every size on every query.
* At most every ``catalog.refresh_s`` per process (a query in between costs no listing), except
  that a shard this process published (any ShardStore of the root: a generation counter) shows at
  once, and an id the index does not know (a video another process just indexed, its vectors
  already in Milvus) forces a refresh at most every ``_MISS_REFRESH_S``. Calls that return the
  whole library anyway (``latest_status``, ``stats``, ``iter_features``) and a delete's
  ``status_of`` refresh first, incrementally.
* Clock skew: a writer with a slow clock publishes names older than the watermark. Each refresh
  lists from ``watermark - catalog.lookback_s`` (names already indexed are skipped), so skew up
  to that is caught at the next refresh; every ``catalog.full_list_s`` a full listing catches any
  skew, and notices removed or resized shards (compaction, damage, a restore), which rebuilds the
  index. A read that fails also makes the next refresh a full one. Cost of the look-back: the
  shards written in that window, listed (not read) again.
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
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from astradup.store.compact import (CODES_DIM, audio_mfcc_part, dequantise_rows, quantise_rows,
                                    rebuild_audio_vectors)
from astradup.plain import plain
from astradup.records import PDQ_BYTES, STATUS_DELETED, STATUS_FAILED, STATUS_OK, VideoFeatures
from astradup.store.catalog_index import CatalogIndex, FeatureCache

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
    pa.field("pdq", pa.binary()),
    pa.field("pdq_quality", pa.binary()),
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
pdq             binary                  T*32 bytes: [T, 32] uint8 PDQ hash of each frame (vPDQ's
                                        per-frame hash, bytes in its hex order); null or empty in
                                        shards written before PDQ was stored: read as missing
pdq_quality     binary                  T bytes: PDQ quality 0-100 of each frame
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
_ROW_GROUP_BYTES = 1 << 20  # small groups so one video's read skips the rest of a shard (8 MB groups: 36 ms per candidate fetched, library_scale)
# Float vectors and pHash bits are near-incompressible: zstd saved ~7% on them but made reads
# ~5x slower (100 videos x 300 x 512 floats: 1.16 s zstd vs 0.24 s plain), so they go raw.
_RAW_COLUMNS = frozenset({"embeddings", "phash", "audio_vectors", "timestamps", "audio_windows", "pdq"})
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

# Per root, bumped by every shard this process publishes: another ShardStore of the root in this
# process (the CLI next to a replica, a test's second instance) sees it at once, whatever refresh_s.
_generations: dict[str, int] = defaultdict(int)
_MISS_REFRESH_S = 0.25  # an id the index does not know forces a refresh at most this often
_STAMP_RE = re.compile(r"^part-(\d{8}T\d{12})Z-")


def _bump_generation(root: str) -> None:
    with _delete_locks_guard:
        _generations[root] += 1


def _stamp_us(name: str) -> int:
    m = _STAMP_RE.match(name)
    if not m:
        return 0
    dt = datetime.strptime(m.group(1), "%Y%m%dT%H%M%S%f").replace(tzinfo=timezone.utc)
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond


def _name_prefix(us: int) -> str:
    """``part-<stamp>``: every name stamped at or after ``us`` sorts after it."""
    us = max(0, us)
    return "part-" + datetime.fromtimestamp(us // 1_000_000, tz=timezone.utc).strftime("%Y%m%dT%H%M%S") + \
        f"{us % 1_000_000:06d}"


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
        v = plain(rest[name])
        if isinstance(v, bool) or not isinstance(v, accepted):
            continue
        if py is int and name != "size" and not -_INT32_MAX <= v <= _INT32_MAX:
            continue
        cols[name] = py(v)
        del rest[name]
    return cols, json.dumps(plain(rest), sort_keys=True)


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
    pdq = np.ascontiguousarray(f.pdq, dtype=np.uint8)
    pdq_q = np.ascontiguousarray(f.pdq_quality, dtype=np.uint8).reshape(-1)
    if pdq.size and (pdq.ndim != 2 or pdq.shape[1] != PDQ_BYTES or len(pdq) != len(ts) or len(pdq_q) != len(ts)):
        raise ValueError(f"{f.video_id}: pdq {pdq.shape} / quality {pdq_q.shape} are not [{len(ts)}, {PDQ_BYTES}] / "
                         f"[{len(ts)}]")
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
        pdq=pdq.tobytes() if pdq.size else None, pdq_quality=pdq_q.tobytes() if pdq.size else None,
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
    pdq, pdq_q = table.column("pdq").to_pylist(), table.column("pdq_quality").to_pylist()
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
            **_pdq_columns(pdq[i], pdq_q[i]),
        ))
    return out


def _pdq_columns(hashes: bytes | None, quality: bytes | None) -> dict[str, np.ndarray]:
    """The record's PDQ arrays from its two cells; null cells (a shard older than PDQ) read as missing."""
    h = _matrix(np.frombuffer(hashes or b"", np.uint8), PDQ_BYTES)
    q = np.frombuffer(quality or b"", np.uint8).copy()
    if len(q) != len(h):
        raise ValueError(f"corrupt shard row: {len(h)} PDQ hashes but {len(q)} quality values")
    return {"pdq": h, "pdq_quality": q}


class ShardStore:
    """Append-only Parquet store of VideoFeatures and status rows.

    Reads keep a compact in-memory index (``CatalogIndex``: video_id -> newest ok row's shard,
    row and row group; video_id -> latest status), built from the narrow key columns only and
    refreshed incrementally (see "Finding new shards" in the module docstring), so a
    ``load_features`` call reads only the row groups that hold the wanted rows, one read per
    shard, behind a byte-capped cache.

    ``refresh_s`` 0, ``full_list_s`` 0 (the defaults): every call lists the whole root, as a
    CLI or a test wants (always current). The service and jobs get the scalable settings from
    the config (``catalog.*``, through ``Catalog``).
    """

    def __init__(self, root: str, storage_options: dict | None = None, *, refresh_s: float = 0.0,
                 full_list_s: float = 0.0, lookback_s: float = 60.0, cache_bytes: int = 0) -> None:
        self.root = root
        self.fs, path = fsspec.core.url_to_fs(root, **(storage_options or {}))
        self._local = "file" in _protocols(self.fs)
        self._path = os.path.abspath(path) if self._local else path.rstrip("/")
        # pyarrow's own local filesystem is faster than going through the fsspec handler.
        self._pafs = pafs.LocalFileSystem() if self._local else pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))
        self._lock = threading.RLock()
        self.refresh_s, self.full_list_s, self.lookback_s = float(refresh_s), float(full_list_s), float(lookback_s)
        self._index = CatalogIndex()
        self._feat_files: dict[str, int] = {}  # path -> bytes, shards already indexed
        self._status_files: dict[str, int] = {}
        self._watermark = {"features": 0, "status": 0}  # newest part-name stamp (us) seen per kind
        self._last_refresh = -1e18  # monotonic time of the last refresh
        self._last_full = -1e18  # ... and of the last full listing
        self._seen_gen = -1  # this root's in-process write generation at the last refresh
        self.cache = FeatureCache(cache_bytes)
        # What reads cost, for tests and benchmarks: listing calls (a directory scan or one LIST
        # page), entries they returned, full listings, Parquet files opened.
        self.io = {"lists": 0, "list_entries": 0, "full_lists": 0, "parquet_opens": 0}
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
        self._refresh(force=True)
        with self._lock:
            if not self._quarantine:
                return set()
            return self._index.unreadable_ids()

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

    def status_of(self, video_id: str, fresh: bool = True) -> dict | None:
        """The latest status row of one video (``at`` as a UTC datetime), None when it has none.

        ``fresh`` (the default: a delete decides on it) looks for new shards first, incrementally;
        ``fresh=False`` answers from an index at most ``refresh_s`` old (the per-query path)."""
        self._refresh(force=fresh)
        with self._lock:
            return self._index.status_row(video_id)

    def statuses_of(self, video_ids: Iterable[str]) -> dict[str, dict]:
        """Latest status rows of the given ids only (absent: no status), from an index at most
        ``refresh_s`` old: what a search reports per match, without building every row."""
        self._refresh()
        with self._lock:
            return {v: row for v in set(video_ids) if (row := self._index.status_row(v)) is not None}

    def indexed_buckets(self) -> list[str]:
        """The S3 buckets that status rows name (``s3://bucket``), kept as shards are indexed, so
        the service's default uri allow-list costs no listing of every status row."""
        self._refresh()
        with self._lock:
            return [f"s3://{b}" for b in sorted(self._index.s3_buckets)]

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
            _bump_generation(self._path)
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
        _bump_generation(self._path)
        return self._url(final)

    def _url(self, path: str) -> str:
        protocol = _protocols(self.fs)[0]
        return f"{protocol}://{path}"

    # ---------------------------------------------------------------- index

    def _list(self, kind: str) -> dict[str, int]:
        """Every published shard of ``kind`` (a full listing): path -> bytes."""
        directory = f"{self._path}/{kind}"
        self.fs.invalidate_cache(directory)  # s3fs caches listings; new shards must show up
        self.io["lists"] += 1
        try:
            entries = self.fs.ls(directory, detail=True)
        except FileNotFoundError:
            return {}
        self.io["list_entries"] += len(entries)
        out = {}
        for e in entries:
            name = e["name"].rstrip("/")
            # An empty part file is a writer's claim on the name, not yet (or never) filled.
            if e.get("type") == "file" and _PART_RE.match(posixpath.basename(name)) and e.get("size"):
                out[name if not self._local else os.path.abspath(name)] = int(e.get("size") or 0)
        return out

    def _list_after(self, kind: str, after: str) -> dict[str, int]:
        """Published shards of ``kind`` whose name sorts after ``after``: path -> bytes.

        Local: one directory scan, names compared before any stat (no Parquet read). S3: LIST
        with ``StartAfter``, so when nothing is new a refresh is one request answering (nearly)
        nothing, whatever the number of shards. Other fsspec stores: a listing, filtered."""
        directory = f"{self._path}/{kind}"
        out: dict[str, int] = {}
        if self._local:
            self.io["lists"] += 1
            try:
                with os.scandir(directory) as it:
                    for e in it:
                        if e.name > after and _PART_RE.match(e.name) and e.is_file():
                            self.io["list_entries"] += 1
                            size = e.stat().st_size
                            if size:
                                out[f"{directory}/{e.name}"] = size
            except FileNotFoundError:
                pass
            return out
        if "s3" in _protocols(self.fs) and hasattr(self.fs, "call_s3"):
            bucket, _, prefix = directory.partition("/")
            prefix = f"{prefix}/" if prefix else ""
            kw: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "StartAfter": prefix + after}
            while True:
                self.io["lists"] += 1
                resp = self.fs.call_s3("list_objects_v2", **kw)
                for o in resp.get("Contents", []):
                    self.io["list_entries"] += 1
                    name = o["Key"][len(prefix):]
                    if "/" not in name and _PART_RE.match(name) and o.get("Size"):
                        out[f"{bucket}/{o['Key']}"] = int(o["Size"])
                if not resp.get("IsTruncated"):
                    return out
                kw["ContinuationToken"] = resp["NextContinuationToken"]
        return {p: n for p, n in self._list(kind).items() if posixpath.basename(p) > after}

    def refresh(self) -> None:
        """Look for new shards now (incrementally), whatever ``refresh_s`` says."""
        self._refresh(force=True)

    def _refresh(self, force: bool = False) -> None:
        """Index shards that appeared since the last refresh (only their key columns are read).

        At most every ``refresh_s`` (unless ``force``, or a shard was published by this process):
        a listing of the names after the watermark minus ``lookback_s``. Every ``full_list_s``,
        or after a read failed: a full listing, which also notices removed or resized shards."""
        with self._lock:
            now = time.monotonic()
            gen = _generations[self._path]
            if (not force and self.refresh_s > 0 and gen == self._seen_gen
                    and now - self._last_refresh < self.refresh_s):
                return
            self._seen_gen, self._last_refresh = gen, now
            full = self.full_list_s <= 0 or self._feat_stale or now - self._last_full >= self.full_list_s
            if full:
                self._last_full = now
                self.io["full_lists"] += 1
                feats, stats = self._list("features"), self._list("status")
                listed = {**feats, **stats}
                for path in [p for p in self._quarantine if p not in listed]:
                    del self._quarantine[path]  # the operator removed it: nothing left to report
                # Shards removed (compaction) or changed size (files are never rewritten, so a new
                # size means a damaged or restored file), or one failed at read time: rebuild.
                if (self._feat_stale or _changed(self._feat_files, feats)
                        or _changed(self._status_files, stats)):
                    self._index = CatalogIndex()
                    self._feat_files, self._status_files, self._feat_stale = {}, {}, False
                    self._watermark = {"features": 0, "status": 0}
                    self.cache.clear()
            else:
                look = int(self.lookback_s * 1e6)
                feats = self._list_after("features", _name_prefix(self._watermark["features"] - look))
                stats = self._list_after("status", _name_prefix(self._watermark["status"] - look))
            self._ingest_features({p: n for p, n in feats.items() if p not in self._feat_files})
            self._ingest_status({p: n for p, n in stats.items() if p not in self._status_files})

    def _ingest_features(self, new: dict[str, int]) -> None:
        for path in sorted(new, key=posixpath.basename):
            size = new[path]
            if self._skip_quarantined(path, size):
                continue
            got = self._guarded(path, size, lambda: self._feature_keys(path))  # noqa: B023
            if got is None:
                continue
            self._quarantine.pop(path, None)
            self._index.add_features(path, *got)
            self._feat_files[path] = size
            self._watermark["features"] = max(self._watermark["features"], _stamp_us(posixpath.basename(path)))

    def _ingest_status(self, new: dict[str, int]) -> None:
        for path in sorted(new, key=posixpath.basename):
            size = new[path]
            if self._skip_quarantined(path, size):
                continue
            table = self._guarded(path, size, lambda: _status_table(self._open(path).read(  # noqa: B023
                columns=STATUS_SCHEMA.names)))
            if table is None:
                continue
            self._quarantine.pop(path, None)
            self._index.add_status(path, table)
            self._status_files[path] = size
            self._watermark["status"] = max(self._watermark["status"], _stamp_us(posixpath.basename(path)))

    def _open(self, path: str) -> pq.ParquetFile:
        self.io["parquet_opens"] += 1
        return pq.ParquetFile(path, filesystem=self._pafs)

    def _feature_keys(self, path: str) -> tuple[list[str], list[str], list[int], list[int]]:
        pf = self._open(path)
        vids, sts, ats = _feature_keys(pf.read(columns=["video_id", "status", "indexed_at"]))
        md = pf.metadata
        return vids, sts, ats, [md.row_group(i).num_rows for i in range(md.num_row_groups)]

    # ---------------------------------------------------------------- reading

    def latest_status(self) -> dict[str, dict]:
        """video_id -> its latest status row (``at`` as a UTC datetime). Every row: for listings
        and jobs; a query wants ``status_of`` / ``statuses_of``."""
        self._refresh(force=True)
        with self._lock:
            return self._index.all_status()

    def load_features(self, video_ids: Iterable[str]) -> dict[str, VideoFeatures]:
        """Latest ok features per id; ids unknown, failed-only or deleted are absent.

        O(ids) whatever the library's size: index lookups, then the cache, then one read per
        shard of only the row groups holding the rest. An id the index does not know (a video
        another process just indexed, found by its vectors) looks for new shards first, at most
        every ``_MISS_REFRESH_S``."""
        ids = set(video_ids)
        self._refresh()
        with self._lock:
            if (self.refresh_s > 0 and time.monotonic() - self._last_refresh >= _MISS_REFRESH_S
                    and any(not self._index.known(v) for v in ids)):
                self._refresh(force=True)
            # Paths, not shard ids, leave the lock: a rebuild meanwhile renumbers the shards.
            wanted = {vid: self._index.where(loc) for vid in ids if (loc := self._index.locate(vid)) is not None}
            where = {vid: (path, row) for vid, (path, row, _) in wanted.items()}
        out: dict[str, VideoFeatures] = {}
        for vid in list(wanted):
            hit = self.cache.get(vid, where[vid])
            if hit is not None:
                out[vid] = hit
                del wanted[vid]
        got = self._read(wanted)
        for vid, f in got.items():
            self.cache.put(vid, where[vid], f)
        out.update(got)
        return out

    def iter_features(self, batch_size: int = 100, columns: Iterable[str] | None = None
                      ) -> Iterator[list[VideoFeatures]]:
        """Every live video, a shard at a time, so memory stays at one shard's worth.

        ``columns``: read only these (plus the key columns); the others come back empty in the
        records. A scan that needs one feature of every video (the vPDQ hash search reads ``pdq``)
        then reads a few percent of the bytes, not the embeddings of the whole library."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self._refresh(force=True)
        with self._lock:
            by_file = {self._index.files[fid]: {vid: self._index.where((fid, row)) for vid, row in rows.items()}
                       for fid, rows in self._index.live_by_file().items()}
        pending: list[VideoFeatures] = []
        for path in sorted(by_file, key=posixpath.basename):
            got = self._read(by_file[path], columns)
            pending.extend(got[v] for v in sorted(got))
            while len(pending) >= batch_size:
                yield pending[:batch_size]
                pending = pending[batch_size:]
        if pending:
            yield pending

    def _read(self, wanted: dict[str, tuple[str, int, np.ndarray]], columns: Iterable[str] | None = None
              ) -> dict[str, VideoFeatures]:
        """Read exactly the indexed rows: per shard, one open and one read of only the row groups
        that hold them. A shard that fails is quarantined through ``_guarded`` and its videos
        read as missing (the caller gets the others; search drops the missing ones)."""
        if not wanted:
            return {}
        by_file: dict[str, list[tuple[int, str]]] = defaultdict(list)
        starts_of: dict[str, np.ndarray] = {}
        for vid, (path, row, starts) in wanted.items():
            by_file[path].append((row, vid))
            starts_of[path] = starts
        out: dict[str, VideoFeatures] = {}
        for path, rows in by_file.items():
            starts = starts_of[path]
            with self._lock:
                size = self._feat_files.get(path, -1)
            got = self._guarded(path, size, lambda: self._read_rows(path, starts, rows, columns))  # noqa: B023
            if got is None:
                self._drop_features_shard(path)
                continue
            out.update(got)
        return out

    def _read_rows(self, path: str, starts: np.ndarray, rows: list[tuple[int, str]],
                   columns: Iterable[str] | None = None) -> dict[str, VideoFeatures]:
        pf = self._open(path)
        md = pf.metadata
        if len(starts) != md.num_row_groups:
            raise ValueError(f"row groups changed since the shard was indexed ({md.num_row_groups})")
        rows = sorted(rows)
        groups = sorted({int(np.searchsorted(starts, r, side="right")) - 1 for r, _ in rows})
        sizes = [md.row_group(g).num_rows for g in groups]
        offset = dict(zip(groups, np.concatenate([[0], np.cumsum(sizes)])[:-1].tolist()))
        present = set(pf.schema_arrow.names)
        if columns is not None:
            present &= {"video_id", "uri", "status", "indexed_at", "timestamps", *columns}
        table = _conform(pf.read_row_groups(groups, columns=[c for c in FEATURES_SCHEMA.names if c in present]))
        ids = table.column("video_id")
        pos = []
        for r, vid in rows:
            g = int(np.searchsorted(starts, r, side="right")) - 1
            p = offset[g] + r - int(starts[g])
            if p >= table.num_rows or ids[p].as_py() != vid:
                raise ValueError(f"row {r} is not {vid}: the shard changed since it was indexed")
            pos.append(p)
        return {f.video_id: f for f in _rows_to_features(table, pos)}

    def _drop_features_shard(self, path: str) -> None:
        """Forget a features shard that failed at read time: its videos read as missing now, and
        the next refresh (a full listing) rebuilds the index without it (an older readable copy of
        a video, if any, then serves again)."""
        with self._lock:
            self._index.drop_features_file(path)
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
        rows = self._guarded(key, size, lambda: _rows_to_features(_conform(
            pq.read_table(fs_path, filesystem=self._pafs))))
        if rows is None:
            reason = self._quarantine.get(key, (0, 0.0, "vanished while read"))[2]
            raise ValueError(f"{path}: damaged shard, quarantined: {reason}")
        return rows

    def shard_paths(self) -> list[str]:
        """Published features shards, oldest first."""
        self._refresh(force=True)
        with self._lock:
            files = sorted(self._feat_files, key=posixpath.basename)
        return files if self._local else [self._url(f) for f in files]

    def stats(self) -> dict[str, int]:
        """Counts by latest status, live videos, shard files and bytes on storage.

        ``shards`` / ``status_shards`` / ``bytes`` count readable shards only; damaged ones are
        ``shards_quarantined`` (which: ``quarantined()``), and ``videos_unreadable`` are the ok
        videos whose features only a quarantined shard held (``lost_ids()``)."""
        self._refresh(force=True)
        with self._lock:
            counts = self._index.status_counts()
            return {
                "videos_ok": counts[STATUS_OK], "videos_failed": counts[STATUS_FAILED],
                "videos_deleted": counts[STATUS_DELETED],
                "videos_live": int(self._index.live_mask().sum()),
                "shards": len(self._feat_files), "status_shards": len(self._status_files),
                "bytes": sum(self._feat_files.values()) + sum(self._status_files.values()),
                "shards_quarantined": len(self._quarantine),
                "videos_unreadable": 0 if not self._quarantine else len(self._index.unreadable_ids()),
            }


def _changed(cached: dict[str, int], listed: dict[str, int]) -> bool:
    """Whether a shard the index holds was removed or changed size since it was read."""
    return any(listed.get(path) != size for path, size in cached.items())


def _feature_keys(t: pa.Table) -> tuple[list[str], list[str], list[int]]:
    """(video_ids, statuses, indexed_at us) of a features shard's key columns.

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
    return vids, sts, ats.to_pylist()


def _status_table(t: pa.Table) -> pa.Table:
    """A status shard's rows (``at`` as UTC epoch microseconds), checked like ``_feature_keys``."""
    t = t.select(STATUS_SCHEMA.names).cast(STATUS_SCHEMA)
    t = t.set_column(t.schema.get_field_index("at"), "at", pc.cast(t.column("at"), pa.int64()))
    if t.column("video_id").null_count or t.column("at").null_count or t.column("status").null_count:
        raise ValueError("null video_id, status or at")
    bad = set(pc.unique(t.column("status")).to_pylist()) - set(_STATUSES)
    if bad:
        raise ValueError(f"unknown status {sorted(bad)[:5]}")
    return t.combine_chunks()


def _conform(t: pa.Table) -> pa.Table:
    """A features table in FEATURES_SCHEMA: columns an older shard lacks read as nulls."""
    cols = [t.column(f.name) if f.name in t.column_names else pa.nulls(t.num_rows, f.type)
            for f in FEATURES_SCHEMA]
    return pa.Table.from_arrays(cols, names=FEATURES_SCHEMA.names).cast(FEATURES_SCHEMA)


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    p = fs.protocol
    return (p,) if isinstance(p, str) else tuple(p)


def _as_int(v: Any) -> int | None:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    return None


def _as_float(v: Any) -> float | None:
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return float(v)
    return None


__all__ = ["FEATURES_SCHEMA", "STATUS_SCHEMA", "ShardStore"]
