"""Where a shards root lives and which shards it holds: fsspec set-up, listing, opening.

``root`` goes through fsspec, so it may be a local directory or ``s3://bucket/prefix`` (s3fs,
``storage_options``). A refresh lists only the part names after a watermark (store/shard_names.py):
local, one ``scandir`` compared by name with no Parquet read; S3, ``ListObjectsV2`` with
``StartAfter``, one request when nothing is new. ``io`` counts what that costs, for tests and
benchmarks.

Opening a shard on object storage was three to five requests before its rows: a HEAD for the
size, the footer (one or two ranged GETs: footers here are 60-80 KB, above pyarrow's 64 KB first
read) and a 5 MB read-ahead block per column chunk. A shard whose size the listing gave is opened
without the HEAD and without read-ahead, its footer comes from a bounded cache, and the row groups
asked for are fetched as one coalesced read (``pre_buffer``): one GET per shard once warm.
"""
from __future__ import annotations

import os
import posixpath
from typing import Any

import fsspec
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from astradup.store.byte_lru import ByteLRU
from astradup.store.shard_names import PART_RE

FOOTER_CACHE_BYTES = 96 << 20  # resident: ~200 footers of 100-video shards; a 100k library has ~2,000 shards
# A parsed footer holds ~1 KB per column chunk besides its serialised bytes (library shards, 27
# columns x 15-20 row groups: 440-615 KB resident for 42-94 KB serialised, measured over 300-400).
FOOTER_BYTES_PER_CHUNK = 1024


def footer_cost(md: pq.FileMetaData) -> int:
    """Resident bytes of a parsed footer, estimated."""
    return int(md.serialized_size) + FOOTER_BYTES_PER_CHUNK * md.num_row_groups * md.num_columns


class FooterCache:
    """Parquet footers by (path, size), least recently used first out, at most ``cap_bytes``
    resident (``footer_cost``). Shards are immutable once published; the size in the key makes a file
    rewritten under the same name a miss rather than a stale footer."""

    def __init__(self, cap_bytes: int = FOOTER_CACHE_BYTES) -> None:
        self._lru: ByteLRU[tuple[str, int], pq.FileMetaData] = ByteLRU(cap_bytes)

    @property
    def nbytes(self) -> int:
        return self._lru.nbytes

    def __len__(self) -> int:
        return len(self._lru)

    def keys(self) -> list[tuple[str, int]]:
        return self._lru.keys()

    def get(self, path: str, size: int) -> pq.FileMetaData | None:
        return self._lru.get((path, size))

    def put(self, path: str, size: int, md: pq.FileMetaData) -> None:
        self._lru.put((path, size), md, footer_cost(md))

    def drop(self, path: str) -> None:
        for key in self._lru.keys():
            if key[0] == path:
                self._lru.pop(key)


class ShardRoot:
    """One shards root (``<root>/features``, ``<root>/status``) on its filesystem."""

    def __init__(self, root: str, storage_options: dict | None = None) -> None:
        self.root = root
        self.fs, path = fsspec.core.url_to_fs(root, **(storage_options or {}))
        self.local = "file" in protocols(self.fs)
        self.path = os.path.abspath(path) if self.local else path.rstrip("/")
        # pyarrow's own local filesystem is faster than going through the fsspec handler.
        self.pafs = pafs.LocalFileSystem() if self.local else pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))
        # What reads cost, for tests and benchmarks: listing calls (a directory scan or one LIST
        # page), entries they returned, full listings, Parquet files opened.
        self.io = {"lists": 0, "list_entries": 0, "full_lists": 0, "parquet_opens": 0, "footer_hits": 0}
        self.footers = FooterCache()

    def url(self, path: str) -> str:
        """A path of this filesystem as a URL (``s3://bucket/key``)."""
        protocol = protocols(self.fs)[0]
        return f"{protocol}://{path}"

    def open(self, path: str, size: int = -1, keep_footer: bool = True, scan: bool = False) -> pq.ParquetFile:
        """A shard for reading. ``size``: its bytes as listed (-1 unknown: no footer cache, and
        on object storage a HEAD finds it). ``keep_footer`` false for shards read once (status).
        ``scan``: small columns of every row group will be read (the index build), so on object
        storage read-ahead blocks are kept, not one coalesced read per column chunk."""
        self.io["parquet_opens"] += 1
        md = self.footers.get(path, size) if size > 0 else None
        self.io["footer_hits"] += md is not None
        if self.local:
            pf = pq.ParquetFile(path, filesystem=self.pafs, metadata=md)
        else:
            kw: dict[str, Any] = ({} if scan else {"cache_type": "none"}) | ({"size": size} if size > 0 else {})
            pf = pq.ParquetFile(self.fs.open(path, "rb", **kw), metadata=md, pre_buffer=not scan)
        if md is None and size > 0 and keep_footer:
            self.footers.put(path, size, pf.metadata)
        return pf

    def list_all(self, kind: str) -> dict[str, int]:
        """Every published shard of ``kind`` (a full listing): path -> bytes."""
        directory = f"{self.path}/{kind}"
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
            if e.get("type") == "file" and PART_RE.match(posixpath.basename(name)) and e.get("size"):
                out[name if not self.local else os.path.abspath(name)] = int(e.get("size") or 0)
        return out

    def list_after(self, kind: str, after: str) -> dict[str, int]:
        """Published shards of ``kind`` whose name sorts after ``after``: path -> bytes.

        Local: one directory scan, names compared before any stat (no Parquet read). S3: LIST
        with ``StartAfter``, so when nothing is new a refresh is one request answering (nearly)
        nothing, whatever the number of shards. Other fsspec stores: a listing, filtered."""
        directory = f"{self.path}/{kind}"
        out: dict[str, int] = {}
        if self.local:
            self.io["lists"] += 1
            try:
                with os.scandir(directory) as it:
                    for e in it:
                        if e.name > after and PART_RE.match(e.name) and e.is_file():
                            self.io["list_entries"] += 1
                            size = e.stat().st_size
                            if size:
                                out[f"{directory}/{e.name}"] = size
            except FileNotFoundError:
                pass
            return out
        if "s3" in protocols(self.fs) and hasattr(self.fs, "call_s3"):
            bucket, _, prefix = directory.partition("/")
            prefix = f"{prefix}/" if prefix else ""
            kw: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "StartAfter": prefix + after}
            while True:
                self.io["lists"] += 1
                resp = self.fs.call_s3("list_objects_v2", **kw)
                for o in resp.get("Contents", []):
                    self.io["list_entries"] += 1
                    name = o["Key"][len(prefix):]
                    if "/" not in name and PART_RE.match(name) and o.get("Size"):
                        out[f"{bucket}/{o['Key']}"] = int(o["Size"])
                if not resp.get("IsTruncated"):
                    return out
                kw["ContinuationToken"] = resp["NextContinuationToken"]
        return {p: n for p, n in self.list_all(kind).items() if posixpath.basename(p) > after}


def protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    p = fs.protocol
    return (p,) if isinstance(p, str) else tuple(p)


__all__ = ["ShardRoot", "protocols"]
