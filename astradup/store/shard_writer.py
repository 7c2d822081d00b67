"""Writing shards: a features shard with its status rows, status rows alone, each a whole file or nothing.

Files are never rewritten: a re-index or a deletion appends, and readers take the latest row.
That keeps writers lock-free (several Ray workers may append at once) and a crash can only lose
the batch in flight, never corrupt what was there. Each writer's temp file is its own (pid and
random part in the name); names are claimed as store/shard_names.py describes. Deletes alone take
a lock (``delete_guard``), so that one id is tombstoned exactly once.
"""
from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections import defaultdict
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from astradup.records import VideoFeatures
from astradup.store import shard_names
from astradup.store.shard_listing import ShardRoot
from astradup.store.shard_rows import feature_row, features_status_rows, status_rows
from astradup.store.shard_schema import (DICT_COLUMNS, FEATURES_COMPRESSION, FEATURES_SCHEMA, ROW_GROUP_BYTES,
                                         STATS_COLUMNS, STATUS_SCHEMA)

# One lock per shards root for delete's check-then-tombstone, shared by every ShardStore of the root in
# this process (the serve replica and a CLI in one interpreter may hold different instances).
_delete_locks: dict[str, threading.Lock] = {}
_delete_locks_guard = threading.Lock()
_DELETE_LOCK_FILE = ".delete.lock"  # in <root>/status/; a dot name, so no listing takes it for a shard

# Per root, bumped by every shard this process publishes: another ShardStore of the root in this
# process (the CLI next to a replica, a test's second instance) sees it at once, whatever refresh_s.
_generations: dict[str, int] = defaultdict(int)


def bump_generation(root: str) -> None:
    with _delete_locks_guard:
        _generations[root] += 1


def generation(root: str) -> int:
    """How many shards this process has published under ``root`` (the root's ``ShardRoot.path``)."""
    return _generations[root]


def write_features(root: ShardRoot, batch: list[VideoFeatures]) -> str:
    """Write one shard for the batch plus its status rows; returns the shard path.

    An empty batch writes nothing and returns "" (a pipeline flush with nothing pending).
    """
    if not batch:
        return ""
    rows = sorted((feature_row(f) for f in batch), key=lambda r: r["video_id"])
    us = shard_names.now_us()
    for r in rows:
        r["indexed_at"] = us
    table = pa.Table.from_pylist(rows, schema=FEATURES_SCHEMA)
    avg = max(1, table.nbytes // max(1, table.num_rows))
    path = _write(root, table, "features", us, row_group_size=max(1, ROW_GROUP_BYTES // avg),
                  compression=FEATURES_COMPRESSION, use_dictionary=DICT_COLUMNS, statistics=STATS_COLUMNS)
    write_status(root, features_status_rows(batch, us))
    return path


def write_status(root: ShardRoot, rows: list[dict]) -> str:
    """Append status rows (video_id, uri, status, error, size, duration, at); returns the file.

    ``at`` defaults to now; it may be a datetime (naive = UTC) or UTC epoch microseconds.
    """
    if not rows:
        return ""
    now = shard_names.now_us()
    return _write(root, pa.Table.from_pylist(status_rows(rows, now), schema=STATUS_SCHEMA), "status", now)


@contextlib.contextmanager
def delete_guard(root: ShardRoot) -> Iterator[None]:
    """Serialise check-then-tombstone on this shards root, so one id is deleted exactly once.

    Without it three concurrent DELETEs of one id all saw it ``ok`` and wrote three tombstones.
    A lock per root is shared by every ShardStore of this process, and on a local root an
    exclusive ``flock`` on ``status/.delete.lock`` extends it to other processes (a CLI
    ``delete`` next to the server). An object store has no such lock: there two processes
    deleting the same id at the same instant can still both write a tombstone (harmless to
    readers: the state is "deleted" either way).
    """
    with _delete_locks_guard:
        lock = _delete_locks.setdefault(root.path, threading.Lock())
    with lock:
        if not root.local:
            yield
            return
        import fcntl

        directory = f"{root.path}/status"
        os.makedirs(directory, exist_ok=True)
        fd = os.open(f"{directory}/{_DELETE_LOCK_FILE}", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock


def _write(root: ShardRoot, table: pa.Table, kind: str, us: int, row_group_size: int | None = None,
           compression: str | dict[str, str] = "zstd", use_dictionary: bool | list[str] = True,
           statistics: bool | list[str] = True) -> str:
    """Publish a whole file or nothing.

    Local: write a dot-prefixed temp name in the same directory, claim the part name with an
    exclusive create, then rename over the claim (atomic on POSIX), so a killed writer leaves
    only a temp file or an empty claim, both of which readers skip, and no writer ever
    replaces another's file. Object
    stores (s3): an object becomes visible only when its upload completes, and a rename
    there is a copy, so the final key is written directly.
    """
    directory = f"{root.path}/{kind}"
    name = shard_names.part_name(us)
    if root.local:
        os.makedirs(directory, exist_ok=True)
        # Private to this writer: another process drawing the same part name must not share it.
        tmp = f"{directory}/{shard_names.TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{name}"
        try:
            pq.write_table(table, tmp, filesystem=root.pafs, row_group_size=row_group_size,
                           compression=compression, use_dictionary=use_dictionary, write_statistics=statistics)
            final = shard_names.publish(tmp, directory, name, us)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        bump_generation(root.path)
        return final
    final = f"{directory}/{name}"
    for _ in range(shard_names.NAME_TRIES):
        # An object store has no create-if-absent here; checking first narrows a clash (which
        # needs the same microsecond and the same 32 random bits) to the check-to-put window.
        if not root.fs.exists(final):
            break
        final = f"{directory}/{shard_names.part_name(us)}"
    pq.write_table(table, final, filesystem=root.pafs, row_group_size=row_group_size,
                   compression=compression, use_dictionary=use_dictionary, write_statistics=statistics)
    bump_generation(root.path)
    return root.url(final)


__all__ = ["bump_generation", "delete_guard", "generation", "write_features", "write_status"]
