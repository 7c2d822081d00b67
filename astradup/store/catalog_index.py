"""The catalog index: where each video's features are, and its latest status, held compactly.

Why in memory, in numpy columns, and not SQLite / DuckDB / Milvus scalar fields:

* The shards stay the one durable record (nothing else to keep consistent, back up or migrate);
  this index is derived from their narrow key columns and rebuilt from them on start, so it can
  never disagree with them for longer than one refresh.
* A lookup is one dict probe (video_id -> slot) plus array reads: O(1), no I/O, no query planner,
  no lock shared with another process. A Milvus scalar query would put a network round trip on
  every search and tie the shards' truth to the vector copy (which ``reindex`` drops); an SQLite
  file would need a writer per root, which the lock-free append-only writers do not have.
* Per video it holds one dict entry (the interned id) and ~30 bytes of numpy columns
  (features: shard id int32, row int32, time int64; status: code int8, shard id int32, row int32,
  time int64), where the old index kept a ``_Key`` dataclass and a status dict of Python objects
  per video (~1 KB). The status rows' strings (uri, error) stay in the status shards' Arrow
  tables (one buffer per column, no Python object per row) and are read out by (shard, row).
  At ~10M videos that is ~1 GB for the id dict; beyond that, this class is the place to swap in
  an on-disk map (the interface is ``locate`` / ``status_row`` / ``all_status``).

Order of writes is the one ``ShardStore`` documents: ``(at, file name, row)``, so every process
picks the same newest row whatever order it read the shards in (a slow writer's shard read late
still loses to a newer one read earlier).
"""
from __future__ import annotations

import posixpath
import threading
from dataclasses import fields, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from astradup.records import STATUS_DELETED, STATUS_FAILED, STATUS_OK, VideoFeatures
from astradup.store.byte_lru import ByteLRU

STATUS_CODES = (STATUS_OK, STATUS_FAILED, STATUS_DELETED)
_CODE = {s: i for i, s in enumerate(STATUS_CODES)}
_OK, _DELETED = _CODE[STATUS_OK], _CODE[STATUS_DELETED]
_STATUS_KEEP = ("uri", "error", "size", "duration")  # what a status row carries besides id/status/at


class CatalogIndex:
    """video_id -> newest ok features row (shard, row, row group) and latest status, in columns.

    Not thread safe on its own: ``ShardStore`` calls it under its lock.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self.slot: dict[str, int] = {}  # video_id -> row of the columns below
        self.ids: list[str] = []  # slot -> video_id
        self.files: list[str] = []  # shard id -> path (features and status shards share the ids)
        self.names: list[str] = []  # shard id -> file name (the tie-break of the write order)
        self.file_id: dict[str, int] = {}
        self.rg_starts: dict[int, np.ndarray] = {}  # features shard id -> first row of each row group
        self.status_tables: dict[int, pa.Table] = {}  # status shard id -> its uri/error/size/duration
        self.s3_buckets: set[str] = set()  # buckets of every s3:// uri in a status row (the default uri allow-list)
        n = capacity
        self.f_file = np.full(n, -1, np.int32)
        self.f_row = np.zeros(n, np.int32)
        self.f_at = np.zeros(n, np.int64)
        self.s_code = np.full(n, -1, np.int8)
        self.s_file = np.full(n, -1, np.int32)
        self.s_row = np.zeros(n, np.int32)
        self.s_at = np.zeros(n, np.int64)

    # ------------------------------------------------------------------ building

    def _file(self, path: str) -> int:
        fid = self.file_id.get(path)
        if fid is None:
            fid = self.file_id[path] = len(self.files)
            self.files.append(path)
            self.names.append(posixpath.basename(path))
        return fid

    def _slot(self, vid: str) -> int:
        s = self.slot.get(vid)
        if s is None:
            s = self.slot[vid] = len(self.ids)
            self.ids.append(vid)
            if s >= len(self.f_file):
                self._grow()
        return s

    def _grow(self) -> None:
        for name, fill in (("f_file", -1), ("f_row", 0), ("f_at", 0), ("s_code", -1), ("s_file", -1),
                           ("s_row", 0), ("s_at", 0)):
            old = getattr(self, name)
            new = np.full(2 * len(old), fill, old.dtype)
            new[:len(old)] = old
            setattr(self, name, new)

    def _newer(self, at: int, fid: int, row: int, cur_at: int, cur_fid: int, cur_row: int) -> bool:
        if cur_fid < 0:
            return True
        return (at, self.names[fid], row) > (cur_at, self.names[cur_fid], cur_row)

    def add_features(self, path: str, vids: list[str], statuses: list[str], ats: list[int],
                     rg_rows: list[int]) -> None:
        """Index a features shard from its key columns and its row-group sizes."""
        fid = self._file(path)
        self.rg_starts[fid] = np.concatenate([[0], np.cumsum(rg_rows, dtype=np.int64)])[:-1]
        for i, (vid, st, at) in enumerate(zip(vids, statuses, ats)):
            if st != STATUS_OK:
                continue
            s = self._slot(vid)
            if self._newer(at, fid, i, int(self.f_at[s]), int(self.f_file[s]), int(self.f_row[s])):
                self.f_file[s], self.f_row[s], self.f_at[s] = fid, i, at

    def add_status(self, path: str, table: pa.Table) -> None:
        """Index a status shard (``at`` as int64 microseconds, statuses already checked)."""
        fid = self._file(path)
        self.status_tables[fid] = table.select(list(_STATUS_KEEP))
        uris = table.column("uri")
        for uri in pc.unique(pc.filter(uris, pc.starts_with(uris, "s3://"))).to_pylist():
            self.s3_buckets.add(uri[len("s3://"):].split("/", 1)[0])
        vids = table.column("video_id").to_pylist()
        codes = [_CODE[s] for s in table.column("status").to_pylist()]
        ats = table.column("at").to_numpy()
        for i, (vid, code) in enumerate(zip(vids, codes)):
            s = self._slot(vid)
            at = int(ats[i])
            if self._newer(at, fid, i, int(self.s_at[s]), int(self.s_file[s]), int(self.s_row[s])):
                self.s_code[s], self.s_file[s], self.s_row[s], self.s_at[s] = code, fid, i, at

    def drop_features_file(self, path: str) -> None:
        """Forget one features shard's rows (it failed at read time); its videos read as missing."""
        fid = self.file_id.get(path)
        if fid is not None:
            n = len(self.ids)
            self.f_file[:n][self.f_file[:n] == fid] = -1

    # ------------------------------------------------------------------ lookups

    def locate(self, vid: str) -> tuple[int, int] | None:
        """(features shard id, row) of the newest ok row, unless a later tombstone removed it."""
        s = self.slot.get(vid)
        if s is None or self.f_file[s] < 0:
            return None
        if self.s_code[s] == _DELETED and self.s_at[s] >= self.f_at[s]:
            return None
        return int(self.f_file[s]), int(self.f_row[s])

    def where(self, loc: tuple[int, int]) -> tuple[str, int, np.ndarray]:
        """(path, row, first row of each row group) of a ``locate`` answer: what a read needs,
        free of shard ids (a rebuild renumbers them)."""
        fid, row = loc
        return self.files[fid], row, self.rg_starts[fid]

    def known(self, vid: str) -> bool:
        return vid in self.slot

    def status_row(self, vid: str) -> dict[str, Any] | None:
        s = self.slot.get(vid)
        if s is None or self.s_code[s] < 0:
            return None
        extra = self.status_tables[int(self.s_file[s])].slice(int(self.s_row[s]), 1).to_pylist()[0]
        return self._row(vid, int(self.s_code[s]), int(self.s_at[s]), extra)

    @staticmethod
    def _row(vid: str, code: int, at: int, extra: dict[str, Any]) -> dict[str, Any]:
        return {"video_id": vid, "uri": extra["uri"], "status": STATUS_CODES[code], "error": extra["error"],
                "size": extra["size"], "duration": extra["duration"],
                "at": datetime.fromtimestamp(at / 1e6, tz=timezone.utc)}

    def all_status(self) -> dict[str, dict[str, Any]]:
        """Every video's latest status row, read out a status shard at a time."""
        n = len(self.ids)
        have = np.flatnonzero(self.s_code[:n] >= 0)
        out: dict[str, dict[str, Any]] = {}
        files = self.s_file[have]
        for fid in np.unique(files):
            slots = have[files == fid]
            extras = self.status_tables[int(fid)].take(pa.array(self.s_row[slots])).to_pylist()
            for s, extra in zip(slots.tolist(), extras):
                out[self.ids[s]] = self._row(self.ids[s], int(self.s_code[s]), int(self.s_at[s]), extra)
        return out

    def live_mask(self) -> np.ndarray:
        n = len(self.ids)
        f, sc = self.f_file[:n], self.s_code[:n]
        return (f >= 0) & ~((sc == _DELETED) & (self.s_at[:n] >= self.f_at[:n]))

    def live_by_file(self) -> dict[int, dict[str, int]]:
        """features shard id -> {video_id: row} over every live video."""
        out: dict[int, dict[str, int]] = {}
        for s in np.flatnonzero(self.live_mask()).tolist():
            out.setdefault(int(self.f_file[s]), {})[self.ids[s]] = int(self.f_row[s])
        return out

    def status_counts(self) -> dict[str, int]:
        n = len(self.ids)
        counts = np.bincount(self.s_code[:n][self.s_code[:n] >= 0].astype(np.int64), minlength=len(STATUS_CODES))
        return {st: int(counts[i]) for i, st in enumerate(STATUS_CODES)}

    def unreadable_ids(self) -> set[str]:
        """Latest status ok, but no readable features row (their shard is quarantined)."""
        n = len(self.ids)
        return {self.ids[s] for s in np.flatnonzero((self.s_code[:n] == _OK) & (self.f_file[:n] < 0)).tolist()}


def features_nbytes(f: VideoFeatures) -> int:
    """What one record holds in memory: its arrays plus a flat allowance for the rest."""
    n = 512 + len(f.uri) + len(f.video_id) + len(f.error)
    for fld in fields(f):
        v = getattr(f, fld.name)
        if isinstance(v, np.ndarray):
            n += v.nbytes
    return n


def _copy(f: VideoFeatures) -> VideoFeatures:
    """A record whose arrays (and meta) the caller may change without touching the cached one."""
    arrays = {fld.name: getattr(f, fld.name).copy() for fld in fields(f)
              if isinstance(getattr(f, fld.name), np.ndarray)}
    return replace(f, meta=dict(f.meta), **arrays)


class FeatureCache:
    """LRU of decoded records, capped by their bytes (``catalog.feature_cache_mb``; 0 = off).

    Keyed by video_id and checked against the row the index points at, so a re-index (a newer
    row) or a delete (no row) is never answered from the cache. Hits hand out copies: callers
    got writeable arrays of their own before the cache, and still do.
    """

    def __init__(self, cap_bytes: int) -> None:
        self._lru: ByteLRU[str, tuple[tuple[str, int], VideoFeatures]] = ByteLRU(cap_bytes)
        self.hits = 0
        self.misses = 0
        self._count = threading.Lock()

    @property
    def cap(self) -> int:
        return self._lru.cap

    @property
    def bytes(self) -> int:
        return self._lru.nbytes

    def __len__(self) -> int:
        return len(self._lru)

    def get(self, vid: str, where: tuple[str, int]) -> VideoFeatures | None:
        if not self.cap:
            return None
        got = self._lru.get(vid)
        fresh = got is not None and got[0] == where
        with self._count:
            if fresh:
                self.hits += 1
            else:
                self.misses += 1
        return _copy(got[1]) if fresh else None

    def put(self, vid: str, where: tuple[str, int], f: VideoFeatures) -> None:
        if not self.cap:
            return
        size = features_nbytes(f)
        if size <= self.cap:  # one record larger than the whole cache would only evict everything else
            self._lru.put(vid, (where, _copy(f)), size)

    def clear(self) -> None:
        self._lru.clear()
