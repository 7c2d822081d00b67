"""Shard file names: time-ordered part names, unique across writers, claimed without replacing a file.

A name is ``part-<utc us>-<8 hex>.parquet``: the writer's microsecond clock plus 8 random hex
digits. Names sort by time and files are never rewritten, so a reader finds new shards by listing
only the names after a watermark (store/shard_listing.py), with no Parquet read.

Several writers, several processes. A local file is published by first creating its name
exclusively (``O_EXCL``), then renaming the finished temp file over that empty placeholder: two
writers that drew the same name (same microsecond, same random part) keep both files, the second
under a new name, where a plain rename would silently drop the first. Readers skip empty files (a
placeholder, or one a killed writer left). Across machines the time order is only as good as the
clocks (readers look back ``catalog.lookback_s`` for that).
"""
from __future__ import annotations

import os
import re
import threading
import time
import uuid
from datetime import datetime, timezone

PART_RE = re.compile(r"^part-\d{8}T\d{12}Z-[0-9a-f]{8}\.parquet$")
TMP_PREFIX = ".tmp-"  # pyarrow.dataset also ignores names starting with "." by default
NAME_TRIES = 8  # fresh names to draw before a clash is treated as a bug, not bad luck
_STAMP_RE = re.compile(r"^part-(\d{8}T\d{12})Z-")

_clock_lock = threading.Lock()
_last_us = 0


def stamp_us(name: str) -> int:
    """The UTC microseconds a part name was stamped with (0 for a name that is not a part)."""
    m = _STAMP_RE.match(name)
    if not m:
        return 0
    dt = datetime.strptime(m.group(1), "%Y%m%dT%H%M%S%f").replace(tzinfo=timezone.utc)
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond


def name_prefix(us: int) -> str:
    """``part-<stamp>``: every name stamped at or after ``us`` sorts after it."""
    us = max(0, us)
    return "part-" + datetime.fromtimestamp(us // 1_000_000, tz=timezone.utc).strftime("%Y%m%dT%H%M%S") + \
        f"{us % 1_000_000:06d}"


def now_us() -> int:
    """UTC microseconds, strictly increasing within the process.

    Strictness matters: a tombstone written right after an index in the same microsecond
    must still sort after it, and file names (which embed this stamp) must order like writes.
    """
    global _last_us
    with _clock_lock:
        us = time.time_ns() // 1000
        _last_us = us if us > _last_us else _last_us + 1
        return _last_us


def part_name(us: int) -> str:
    """A fresh part name stamped ``us`` (a new random part on every call)."""
    stamp = datetime.fromtimestamp(us / 1e6, tz=timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"


def publish(tmp: str, directory: str, name: str, us: int) -> str:
    """Give the finished temp file its part name without ever replacing an existing file.

    The name is claimed with ``O_CREAT | O_EXCL`` (an empty file, which readers skip) and the temp
    file renamed over the claim. A bare ``os.replace`` would silently drop another writer's shard
    of the same name, its status rows with it; here the clash shows and a fresh name is drawn.
    """
    for _ in range(NAME_TRIES):
        final = f"{directory}/{name}"
        try:
            fd = os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            name = part_name(us)
            continue
        os.close(fd)
        try:
            os.replace(tmp, final)
        except BaseException:
            os.unlink(final)  # our own empty claim; nothing else can be at that name
            raise
        return final
    raise FileExistsError(f"{directory}: {NAME_TRIES} part names in a row were taken")


__all__ = ["NAME_TRIES", "PART_RE", "TMP_PREFIX", "name_prefix", "now_us", "part_name", "publish", "stamp_us"]
