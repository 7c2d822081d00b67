"""Bytes and pictures of indexed videos, for the browser: ranged reads and cached JPEG thumbnails.

Every function takes an :class:`Indexed` built from an indexed video's status row; the HTTP layer
only ever hands it ids, so a client can never make the server read a path of its choosing.

A file can change after it was indexed: replaced by a symlink to ``/etc/passwd``, or by other
bytes. So nothing is served (bytes or thumbnails) unless :func:`open_verified` finds, on the very
file descriptor that is then read, a regular file (opened with ``O_NOFOLLOW``: a symlink in the
last component is refused) whose size equals the recorded one and whose first 64 KiB hash to the
recorded ``head_hash`` (records written before it existed are checked on size alone). A symlinked
parent folder cannot swap in another file either: that file would still need the indexed size
and head. Every failure gives the same MediaGone text, whatever the cause.
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from astradup.io.ids import head_hash
from astradup.io.remote import filesystem, is_remote, local_path
from astradup.io.sources import local_copy
from astradup.io.thumbs import jpeg_frame

CHUNK = 256 << 10  # bytes per read while streaming a range
S3_BLOCK = 1 << 20  # readahead of an S3 object being served
THUMB_WIDTH = 320
THUMB_STEP = 0.1  # seconds: thumbnails are cached per tenth of a second, so a cache hit is likely
FFMPEG_TIMEOUT_S = 30
_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".mkv": "video/x-matroska",
          ".webm": "video/webm", ".avi": "video/x-msvideo", ".ts": "video/mp2t", ".mpg": "video/mpeg",
          ".mpeg": "video/mpeg", ".flv": "video/x-flv", ".wmv": "video/x-ms-wmv", ".3gp": "video/3gpp",
          ".ogv": "video/ogg"}


# One text for every cause (gone, a symlink, not a regular file, other size, other head bytes):
# which one it was is the operator's business (the file system says), not a client's.
MEDIA_CHANGED = "media changed since indexing (missing, moved or replaced): not served"
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # no FIFO hang
               | getattr(os, "O_CLOEXEC", 0))
_PROC_FD = "/proc/self/fd"


class MediaGone(FileNotFoundError):
    """Indexed once, but the file is no longer what the index saw (or no longer there)."""

    def __init__(self, message: str = MEDIA_CHANGED) -> None:
        super().__init__(message)


@dataclass(frozen=True)
class Indexed:
    """What the index recorded of a file: where it was read, its size and (records written since
    head hashes exist) the hash of its first 64 KiB (``astradup.io.ids.head_hash``)."""

    uri: str
    size: int | None
    head_hash: str | None = None


def content_type(uri: str) -> str:
    return _TYPES.get(Path(uri).suffix.lower(), "application/octet-stream")


def open_verified(rec: Indexed, endpoint: str = "") -> tuple[BinaryIO, int]:
    """(open file at offset 0, size) of exactly the indexed file, or MediaGone.

    The caller reads this file object (and closes it): the checks are made on what is read, not on
    a path that could be swapped between a check and an open.
    """
    if rec.size is None or rec.size < 0:
        raise MediaGone()  # nothing recorded to check against: not served
    if is_remote(rec.uri):
        return _open_remote(rec, endpoint)
    return _open_local(local_path(rec.uri), rec)


def _open_local(path: str, rec: Indexed) -> tuple[BinaryIO, int]:
    try:
        fd = os.open(path, _OPEN_FLAGS)  # ELOOP on a symlink, ENOENT when gone
    except OSError:
        raise MediaGone() from None
    try:
        st = os.fstat(fd)
        regular = stat.S_ISREG(st.st_mode)
    except OSError:
        regular = False
    if not regular or st.st_size != rec.size:
        os.close(fd)
        raise MediaGone()
    return _head_checked(os.fdopen(fd, "rb"), rec), int(st.st_size)


def _open_remote(rec: Indexed, endpoint: str) -> tuple[BinaryIO, int]:
    """S3 has no symlinks; an object overwritten since indexing shows in its size or first bytes."""
    try:
        # 1 MiB readahead (s3fs's default is 50 MiB): the head check and a seek elsewhere stay cheap
        f = filesystem(rec.uri, endpoint).open(rec.uri, "rb", block_size=S3_BLOCK)
    except OSError:  # FileNotFoundError, PermissionError
        raise MediaGone() from None
    try:
        size = int(f.size)
    except OSError:
        f.close()
        raise MediaGone() from None
    if size != rec.size:
        f.close()
        raise MediaGone()
    return _head_checked(f, rec), int(rec.size)


def _head_checked(f: BinaryIO, rec: Indexed) -> BinaryIO:
    """``f`` rewound, when its first bytes still hash to the indexed head (closed and MediaGone if not)."""
    try:
        if rec.head_hash and head_hash(f) != rec.head_hash:
            raise MediaGone()
        f.seek(0)
    except OSError:
        f.close()
        raise MediaGone() from None
    except BaseException:
        f.close()
        raise
    return f


def stream_range(f: BinaryIO, start: int, length: int) -> Iterator[bytes]:
    """``length`` bytes of ``f`` (from :func:`open_verified`) from ``start``, a chunk at a time (a
    2 GB file never sits in memory); closes ``f`` when done or abandoned."""
    try:
        f.seek(start)
        left = length
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        f.close()


@contextlib.contextmanager
def verified_path(rec: Indexed, endpoint: str = "") -> Iterator[tuple[str, tuple[int, ...]]]:
    """(path, fds to pass a child) naming exactly the verified bytes, for ffmpeg.

    A local file is named through ``/proc/self/fd/N`` of the verified descriptor (a child that is
    passed fd N reopens that same inode, whatever the path now points at); an S3 object is copied
    and the copy verified. Where there is no /proc, the checked path itself is used.
    """
    if is_remote(rec.uri):
        open_verified(rec, endpoint)[0].close()  # a changed object fails here, before any download
        with local_copy(rec.uri, endpoint) as copy, verified_path(Indexed(copy, rec.size, rec.head_hash)) as got:
            yield got
        return
    f, _ = open_verified(rec)
    with f:
        fd = f.fileno()
        if os.path.isdir(_PROC_FD):
            yield f"{_PROC_FD}/{fd}", (fd,)
        else:
            yield local_path(rec.uri), ()


class ThumbCache:
    """JPEG frames of indexed videos made by ffmpeg on first request, then served from disk.

    Files are named by video id and time only and written through a temp file + rename, so two
    replicas asking for the same frame at once both end with a complete JPEG.
    """

    def __init__(self, root: str | Path, endpoint: str = "", width: int = THUMB_WIDTH) -> None:
        self.root = Path(root)
        self.endpoint = endpoint
        self.width = width
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def path(self, video_id: str, t: float) -> Path:
        return self.root / video_id / f"{int(round(t / THUMB_STEP))}.jpg"

    def get(self, video_id: str, rec: Indexed, t: float, duration: float | None) -> bytes:
        """JPEG bytes of the frame at ``t`` seconds (clamped into the video); MediaGone, even for a
        frame cached earlier, once the file is no longer what was indexed (as /media answers)."""
        if duration and duration > 0:
            t = min(t, max(0.0, duration - 0.05))
        t = round(max(0.0, t) / THUMB_STEP) * THUMB_STEP
        out = self.path(video_id, t)
        if out.is_file():
            open_verified(rec, self.endpoint)[0].close()
            return out.read_bytes()
        with self._guard:
            lock = self._locks.setdefault(str(out), threading.Lock())
        with lock:
            if not out.is_file():
                self._render(rec, t, out)
            else:
                open_verified(rec, self.endpoint)[0].close()
        return out.read_bytes()

    def _render(self, rec: Indexed, t: float, out: Path) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with verified_path(rec, self.endpoint) as (path, fds):
            fd, tmp = tempfile.mkstemp(prefix=".thumb-", suffix=".jpg", dir=out.parent)
            os.close(fd)
            try:
                if jpeg_frame(path, t, self.width, tmp, fds, FFMPEG_TIMEOUT_S):
                    os.replace(tmp, out)
                    return
                raise RuntimeError(f"ffmpeg could not extract a frame of {Path(rec.uri).name} at {t:g} s")
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

