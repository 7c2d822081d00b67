"""Damaged shards: quarantined (logged once, recorded, left on disk, skipped), never fatal.

Every shard read goes through :meth:`Quarantine.guarded`: a file that cannot be read or does not
hold what our writer writes (truncated, overwritten, not Parquet, wrong columns) is logged once,
recorded by path (``ShardStore.stats()["shards_quarantined"]``, ``ShardStore.quarantined()``), left
on disk untouched for the operator, and skipped, so one bad file can no longer turn every status
listing, feature load and search into an error. What that costs: the videos whose newest features
sit in a quarantined shard read as missing (search drops them, their ids show in
``ShardStore.lost_ids()`` and a backfill over the sources indexes them again); the rows of a
quarantined status shard are unknown, so those videos have no readable status and a backfill
re-indexes them, and a tombstone that was in it is lost (the video is live again until deleted
again). A quarantined file whose size changes (the operator restored it), or after
``QUARANTINE_RETRY_S`` (a transient storage error), is read again.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable

import pyarrow as pa

log = logging.getLogger(__name__)
# What a damaged shard raises: pyarrow's own errors (ArrowInvalid "magic bytes not found" on a
# truncated file is a ValueError), OSError for a short read or a bad compressed page, and what our
# own row decoding raises on values that do not fit (a ValueError from a row's matrix, a KeyError...).
_UNREADABLE: tuple[type[BaseException], ...] = (pa.ArrowException, OSError, ValueError, KeyError,
                                                TypeError, IndexError, UnicodeDecodeError)
QUARANTINE_RETRY_S = 300.0  # a quarantined shard is read again after this (the error may have been transient)
_logged_quarantine: set[tuple[str, int]] = set()  # (path, size) already logged by this process
_logged_lock = threading.Lock()


class Quarantine:
    """The shards of one root that reads found damaged: path -> (size when it failed, monotonic
    time it failed, reason). Thread-safe; shared by every read of one ShardStore."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bad: dict[str, tuple[int, float, str]] = {}

    def guarded(self, path: str, size: int, read: Callable[[], Any]) -> Any | None:
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
            self._add(path, size, f"{type(e).__name__}: {e}")
            return None

    def _add(self, path: str, size: int, reason: str) -> None:
        reason = reason.replace("\n", " ")[:500]
        with self._lock:
            self._bad[path] = (size, time.monotonic(), reason)
        with _logged_lock:
            first = (path, size) not in _logged_quarantine
            _logged_quarantine.add((path, size))
        if first:
            log.error("shard quarantined (left on disk, skipped by every read): %s: %s", path, reason,
                      extra={"stage": "shards", "shard": path})

    def skip(self, path: str, size: int) -> bool:
        """True while a listed file is a known-bad shard: same size and not yet due for a retry."""
        with self._lock:
            q = self._bad.get(path)
        return q is not None and q[0] == size and time.monotonic() - q[1] < QUARANTINE_RETRY_S

    def cleared(self, path: str) -> None:
        """``path`` was read fine (restored, or the error was transient): no longer quarantined."""
        with self._lock:
            self._bad.pop(path, None)

    def keep_listed(self, listed: Iterable[str]) -> None:
        """Forget the files a full listing no longer shows: the operator removed them."""
        keep = set(listed)
        with self._lock:
            for path in [p for p in self._bad if p not in keep]:
                del self._bad[path]

    def reason(self, path: str, default: str) -> str:
        with self._lock:
            return self._bad[path][2] if path in self._bad else default

    def reasons(self) -> dict[str, str]:
        """Path -> why, sorted by path."""
        with self._lock:
            return {p: r for p, (_, _, r) in sorted(self._bad.items())}

    def __len__(self) -> int:
        with self._lock:
            return len(self._bad)


__all__ = ["QUARANTINE_RETRY_S", "Quarantine"]
