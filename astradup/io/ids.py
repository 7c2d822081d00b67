"""Content ids: the same bytes always get the same id, wherever the file lives or is renamed.

A content hash (rather than the path) is what lets a backfill skip files it has already indexed
and lets two copies of one file collapse to one record.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
from typing import BinaryIO, Callable

from astradup.errors import MediaError
from astradup.io.gate import NOT_A_FILE

CHUNK = 1 << 20  # 1 MiB: streamed, so a multi-GB video never sits in memory
# What content_id gives: the one form a video id has (HTTP path and JSON-schema patterns use it too).
ID_PATTERN = r"^[0-9a-f]{32}$"
_ID = re.compile(r"[0-9a-f]{32}")


def is_video_id(value: object) -> bool:
    """Whether ``value`` is a video id as :func:`content_id` gives it: exactly 32 lowercase hex
    characters (a full match: a trailing newline, which ``$`` would let through, is refused)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def check_video_id(value: object, what: str = "video_id") -> str:
    """``value`` when it is a video id, else ValueError naming ``what`` (the field a caller read)."""
    if not is_video_id(value):
        raise ValueError(f"{what} is not 32 lowercase hex characters")
    return value  # type: ignore[return-value]


def content_id(path_or_fileobj: str | os.PathLike[str] | BinaryIO) -> str:
    """blake2b-128 of the bytes as 32 hex chars.

    A file object is read from its current position to the end (and left there), so a caller that
    already holds an open stream (e.g. from fsspec/S3) does not have to download it to disk first.
    """
    return _digest(path_or_fileobj, _feed)


HEAD_HASH_BYTES = 64 << 10  # what head_hash reads: one small read, even of a multi-GB file


def head_hash(path_or_fileobj: str | os.PathLike[str] | BinaryIO) -> str:
    """blake2b-128 (32 hex chars) of the first HEAD_HASH_BYTES bytes.

    Recorded at index time (``meta["head_hash"]``) so the service can check, for the price of one
    64 KiB read, that the file it is about to serve still starts with the bytes it indexed: with the
    size, that catches a file replaced by another (or by a symlink to one) without re-hashing it
    whole. A file object is read from its current position.
    """
    return _digest(path_or_fileobj, _feed_head)


def _digest(path_or_fileobj: str | os.PathLike[str] | BinaryIO,
            feed: Callable[[hashlib.blake2b, BinaryIO], None]) -> str:
    """blake2b-128 hex of what ``feed`` reads from a path (opened here) or an open file object."""
    h = hashlib.blake2b(digest_size=16)
    if isinstance(path_or_fileobj, (str, os.PathLike)):
        # Non-blocking open and a regular-file check first: a FIFO or a device named as a video
        # (a file listed for indexing may come from anyone) would otherwise block or never end.
        fd = os.open(path_or_fileobj, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise MediaError(os.fspath(path_or_fileobj), NOT_A_FILE)
        with os.fdopen(fd, "rb") as f:
            feed(h, f)
    else:
        feed(h, path_or_fileobj)
    return h.hexdigest()


def _feed_head(h: hashlib.blake2b, f: BinaryIO) -> None:
    left = HEAD_HASH_BYTES
    while left > 0:
        chunk = f.read(left)
        if not chunk:
            break
        h.update(chunk)
        left -= len(chunk)


def _feed(h: hashlib.blake2b, f: BinaryIO) -> None:
    while True:
        chunk = f.read(CHUNK)
        if not chunk:
            break
        h.update(chunk)
