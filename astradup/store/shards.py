"""Parquet shards: the durable record of every indexed video (features + per-file outcome), and reading it.

Milvus holds only what search needs; the shards hold everything, so the vector index can be
rebuilt (``reindex``) or re-scored without decoding a single video again. ``ShardStore`` is the
one front door; its jobs live in their own modules:

* store/shard_schema.py   the format (FEATURES_SCHEMA, STATUS_SCHEMA)
* store/shard_rows.py     records <-> rows
* store/shard_names.py    time-ordered part names, claimed without replacing a file
* store/shard_writer.py   appending shards (never rewritten), the delete lock
* store/shard_listing.py  the root on its filesystem, listing new shards
* store/shard_quarantine.py  damaged shards skipped, never fatal
* store/catalog_index.py  the in-memory index and feature cache this module keeps current

Layout::

    <root>/features/part-<utc>-<uuid8>.parquet   one file per write_features() call (FEATURES_SCHEMA)
    <root>/status/part-<utc>-<uuid8>.parquet     one file per status write (STATUS_SCHEMA)

Readers order rows by ``(at, file name, row)``, a total order every reader computes the same way,
so each process sees the same latest status per video whatever order it listed the files in.

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
  already in Milvus) forces a refresh at most every ``MISS_REFRESH_S``. Calls that return the
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
import os
import posixpath
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

import numpy as np
import pyarrow.parquet as pq

from astradup.records import STATUS_DELETED, STATUS_FAILED, STATUS_OK, VideoFeatures
from astradup.store import shard_writer
from astradup.store.catalog_index import CatalogIndex, FeatureCache
from astradup.store.shard_listing import ShardRoot
from astradup.store.shard_names import name_prefix, stamp_us
from astradup.store.shard_quarantine import Quarantine
from astradup.store.shard_rows import read_rows, rows_to_features, shard_keys, status_table
from astradup.store.shard_schema import STATUS_SCHEMA, conform

MISS_REFRESH_S = 0.25  # an id the index does not know forces a refresh at most this often


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
                 full_list_s: float = 0.0, lookback_s: float = 60.0, cache_bytes: int = 0,
                 read_concurrency: int = 1) -> None:
        self._root = ShardRoot(root, storage_options)
        self.root, self.fs, self.io = root, self._root.fs, self._root.io
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
        self.read_concurrency = max(1, int(read_concurrency))  # shards read at once by one load_features
        self._quarantine = Quarantine()  # shards skipped as damaged (store/shard_quarantine.py)
        self._feat_stale = False  # a features shard failed at read time: rebuild the index next refresh

    def _shown(self, path: str) -> str:
        """A path as callers see it: local as is, remote as a URL."""
        return path if self._root.local else self._root.url(path)

    # ---------------------------------------------------------------- quarantine

    def quarantined(self, refresh: bool = True) -> dict[str, str]:
        """Shard path -> why it was quarantined, for the damaged files the last reads skipped.

        ``refresh=False`` answers from what the reads so far found, without listing the storage
        (cheap enough for a health probe)."""
        if refresh:
            self._refresh()
        return {self._shown(p): r for p, r in self._quarantine.reasons().items()}

    def lost_ids(self) -> set[str]:
        """Ids whose latest status is ok but whose features no readable shard holds.

        Empty unless a features shard is quarantined: their newest features sat in it. A backfill
        treats them as not done (``pipeline.index``), so re-running it over the sources restores them.
        """
        self._refresh(force=True)
        with self._lock:
            if not len(self._quarantine):
                return set()
            return self._index.unreadable_ids()

    # ---------------------------------------------------------------- writing (store/shard_writer.py)

    def write_features(self, batch: list[VideoFeatures]) -> str:
        """Write one shard for the batch plus its status rows; returns the shard path ("" for no batch)."""
        return shard_writer.write_features(self._root, batch)

    def write_status(self, rows: list[dict]) -> str:
        """Append status rows (video_id, uri, status, error, size, duration, at); returns the file.

        ``at`` defaults to now; it may be a datetime (naive = UTC) or UTC epoch microseconds.
        """
        return shard_writer.write_status(self._root, rows)

    def mark_deleted(self, video_id: str, uri: str = "") -> None:
        """Tombstone: the features stay on disk (auditable) but are no longer returned.

        Unconditional; a delete that must happen once (the API, the CLI) checks the status and
        writes this inside ``delete_guard()`` (``Catalog.remove``)."""
        self.write_status([{"video_id": video_id, "uri": uri, "status": STATUS_DELETED}])

    def delete_guard(self) -> contextlib.AbstractContextManager[None]:
        """Serialise check-then-tombstone on this shards root, so one id is deleted exactly once
        (``shard_writer.delete_guard``: across this process, and across processes on a local root)."""
        return shard_writer.delete_guard(self._root)

    # ---------------------------------------------------------------- status

    def status_of(self, video_id: str, fresh: bool = True) -> dict | None:
        """The latest status row of one video (``at`` as a UTC datetime), None when it has none.

        ``fresh`` (the default: a delete decides on it) looks for new shards first, incrementally;
        ``fresh=False`` answers from an index at most ``refresh_s`` old (the per-query path)."""
        self._refresh(force=fresh)
        with self._lock:
            return self._index.status_row(video_id)

    def statuses_of(self, video_ids: Iterable[str], fresh: bool = False) -> dict[str, dict]:
        """Latest status rows of the given ids only (absent: no status), from an index at most
        ``refresh_s`` old (``fresh``: as ``status_of``): what a search reports per match."""
        self._refresh(force=fresh)
        with self._lock:
            return {v: row for v in set(video_ids) if (row := self._index.status_row(v)) is not None}

    def indexed_buckets(self) -> list[str]:
        """The S3 buckets that status rows name (``s3://bucket``), kept as shards are indexed, so
        the service's default uri allow-list costs no listing of every status row."""
        self._refresh()
        with self._lock:
            return [f"s3://{b}" for b in sorted(self._index.s3_buckets)]

    def latest_status(self) -> dict[str, dict]:
        """video_id -> its latest status row (``at`` as a UTC datetime). Every row: for listings
        and jobs; a query wants ``status_of`` / ``statuses_of``."""
        self._refresh(force=True)
        with self._lock:
            return self._index.all_status()

    # ---------------------------------------------------------------- index

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
            gen = shard_writer.generation(self._root.path)
            if (not force and self.refresh_s > 0 and gen == self._seen_gen
                    and now - self._last_refresh < self.refresh_s):
                return
            self._seen_gen, self._last_refresh = gen, now
            full = self.full_list_s <= 0 or self._feat_stale or now - self._last_full >= self.full_list_s
            if full:
                self._last_full = now
                self.io["full_lists"] += 1
                feats, stats = self._root.list_all("features"), self._root.list_all("status")
                self._quarantine.keep_listed({**feats, **stats})  # removed by the operator: nothing to report
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
                feats = self._root.list_after("features", name_prefix(self._watermark["features"] - look))
                stats = self._root.list_after("status", name_prefix(self._watermark["status"] - look))
            self._ingest_features({p: n for p, n in feats.items() if p not in self._feat_files})
            self._ingest_status({p: n for p, n in stats.items() if p not in self._status_files})

    def _ingest_features(self, new: dict[str, int]) -> None:
        for path in sorted(new, key=posixpath.basename):
            size = new[path]
            if self._quarantine.skip(path, size):
                continue
            got = self._quarantine.guarded(
                path, size, lambda: shard_keys(self._root.open(path, size, scan=True)))  # noqa: B023
            if got is None:
                continue
            self._quarantine.cleared(path)
            self._index.add_features(path, *got)
            self._feat_files[path] = size
            self._watermark["features"] = max(self._watermark["features"], stamp_us(posixpath.basename(path)))

    def _ingest_status(self, new: dict[str, int]) -> None:
        for path in sorted(new, key=posixpath.basename):
            size = new[path]
            if self._quarantine.skip(path, size):
                continue
            table = self._quarantine.guarded(path, size, lambda: status_table(self._root.open(  # noqa: B023
                path, size, keep_footer=False, scan=True).read(columns=STATUS_SCHEMA.names)))
            if table is None:
                continue
            self._quarantine.cleared(path)
            self._index.add_status(path, table)
            self._status_files[path] = size
            self._watermark["status"] = max(self._watermark["status"], stamp_us(posixpath.basename(path)))

    # ---------------------------------------------------------------- reading

    def load_features(self, video_ids: Iterable[str]) -> dict[str, VideoFeatures]:
        """Latest ok features per id; ids unknown, failed-only or deleted are absent.

        O(ids) whatever the library's size: index lookups, then the cache, then one read per
        shard of only the row groups holding the rest. An id the index does not know (a video
        another process just indexed, found by its vectors) looks for new shards first, at most
        every ``MISS_REFRESH_S``."""
        ids = set(video_ids)
        self._refresh()
        with self._lock:
            if (self.refresh_s > 0 and time.monotonic() - self._last_refresh >= MISS_REFRESH_S
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

        def one(item: tuple[str, list[tuple[int, str]]]) -> tuple[str, dict[str, VideoFeatures] | None]:
            path, rows = item
            with self._lock:
                size = self._feat_files.get(path, -1)
            return path, self._quarantine.guarded(
                path, size, lambda: read_rows(self._root.open(path, size), starts_of[path], rows, columns))
        # a search's candidates sit in as many shards, and on object storage a read is round trips of latency
        n = min(self.read_concurrency, len(by_file))
        with ThreadPoolExecutor(n, thread_name_prefix="shard-read") if n > 1 else contextlib.nullcontext() as pool:
            results = list((pool.map if pool is not None else map)(one, by_file.items()))
        out: dict[str, VideoFeatures] = {}
        for path, got in results:
            if got is None:
                self._drop_features_shard(path)
                continue
            out.update(got)
        return out

    def _drop_features_shard(self, path: str) -> None:
        """Forget a features shard that failed at read time: its videos read as missing now, and
        the next refresh (a full listing) rebuilds the index without it (an older readable copy of
        a video, if any, then serves again)."""
        with self._lock:
            self._index.drop_features_file(path)
            self._feat_files.pop(path, None)
            self._root.footers.drop(path)
            self._feat_stale = True

    def read_shard(self, path: str) -> list[VideoFeatures]:
        """Every row of one features shard, failed ones included (audit / debugging).

        A damaged shard is quarantined as on any other read and reported as a ValueError naming
        it (an audit asked for this file, so silence would mislead); a missing one raises
        FileNotFoundError."""
        fs_path = path.split("://", 1)[1] if "://" in path else path
        key = os.path.abspath(fs_path) if self._root.local else fs_path
        size = int(self.fs.size(fs_path))
        rows = self._quarantine.guarded(key, size, lambda: rows_to_features(conform(
            pq.read_table(fs_path, filesystem=self._root.pafs))))
        if rows is None:
            reason = self._quarantine.reason(key, "vanished while read")
            raise ValueError(f"{path}: damaged shard, quarantined: {reason}")
        return rows

    def shard_paths(self) -> list[str]:
        """Published features shards, oldest first."""
        self._refresh(force=True)
        with self._lock:
            files = sorted(self._feat_files, key=posixpath.basename)
        return [self._shown(f) for f in files]

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
                "videos_unreadable": 0 if not len(self._quarantine) else len(self._index.unreadable_ids()),
            }


def _changed(cached: dict[str, int], listed: dict[str, int]) -> bool:
    """Whether a shard the index holds was removed or changed size since it was read."""
    return any(listed.get(path) != size for path, size in cached.items())


__all__ = ["MISS_REFRESH_S", "ShardStore"]
