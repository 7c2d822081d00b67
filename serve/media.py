"""Bytes and pictures of indexed videos, for the browser: ranged reads and cached JPEG thumbnails.

Every function takes the ``uri`` of an indexed video as recorded in its status row; the HTTP layer
only ever hands it ids, so a client can never make the server read a path of its choosing.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, Iterator

from astradup.errors import MediaError
from astradup.io.gate import admit
from astradup.io.sources import is_remote, local_copy, storage_options

CHUNK = 256 << 10  # bytes per read while streaming a range
THUMB_WIDTH = 320
THUMB_STEP = 0.1  # seconds: thumbnails are cached per tenth of a second, so a cache hit is likely
FFMPEG_TIMEOUT_S = 30
_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".mkv": "video/x-matroska",
          ".webm": "video/webm", ".avi": "video/x-msvideo", ".ts": "video/mp2t", ".mpg": "video/mpeg",
          ".mpeg": "video/mpeg", ".flv": "video/x-flv", ".wmv": "video/x-ms-wmv", ".3gp": "video/3gpp",
          ".ogv": "video/ogg"}


def _fs(uri: str, endpoint: str):
    import fsspec

    proto = uri.split("://", 1)[0]
    return fsspec.filesystem(proto, **(storage_options(endpoint) if proto == "s3" else {}))


class MediaGone(FileNotFoundError):
    """Indexed once, but the file is no longer where the index saw it."""


def content_type(uri: str) -> str:
    return _TYPES.get(Path(uri).suffix.lower(), "application/octet-stream")


def media_size(uri: str, endpoint: str = "") -> int:
    try:
        if is_remote(uri):
            return int(_fs(uri, endpoint).size(uri))
        return os.stat(uri.removeprefix("file://")).st_size
    except FileNotFoundError as e:
        raise MediaGone(f"{Path(uri).name}: no longer at its indexed location") from e


def open_media(uri: str, endpoint: str = "") -> BinaryIO:
    try:
        if is_remote(uri):
            return _fs(uri, endpoint).open(uri, "rb")
        return open(uri.removeprefix("file://"), "rb")
    except FileNotFoundError as e:
        raise MediaGone(f"{Path(uri).name}: no longer at its indexed location") from e


def iter_range(uri: str, start: int, length: int, endpoint: str = "") -> Iterator[bytes]:
    """``length`` bytes from ``start``, a chunk at a time (a 2 GB file never sits in memory)."""
    with open_media(uri, endpoint) as f:
        f.seek(start)
        left = length
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk


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

    def get(self, video_id: str, uri: str, t: float, duration: float | None) -> bytes:
        """JPEG bytes of the frame at ``t`` seconds (clamped into the video)."""
        if duration and duration > 0:
            t = min(t, max(0.0, duration - 0.05))
        t = round(max(0.0, t) / THUMB_STEP) * THUMB_STEP
        out = self.path(video_id, t)
        if out.is_file():
            return out.read_bytes()
        with self._guard:
            lock = self._locks.setdefault(str(out), threading.Lock())
        with lock:
            if not out.is_file():
                self._render(uri, t, out)
        return out.read_bytes()

    def _render(self, uri: str, t: float, out: Path) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if is_remote(uri):
            media_size(uri, self.endpoint)  # a missing object says so, rather than failing inside ffmpeg
        elif not os.path.isfile(uri.removeprefix("file://")):
            raise MediaGone(f"{Path(uri).name}: no longer at its indexed location")
        with local_copy(uri, self.endpoint) as path:
            fd, tmp = tempfile.mkstemp(prefix=".thumb-", suffix=".jpg", dir=out.parent)
            os.close(fd)
            try:
                # Past the last frame ffmpeg writes nothing; an earlier time is the nearest frame.
                for when in dict.fromkeys((t, max(0.0, t - 1.0), 0.0)):
                    if _ffmpeg_frame(path, when, self.width, tmp):
                        os.replace(tmp, out)
                        return
                raise RuntimeError(f"ffmpeg could not extract a frame of {Path(uri).name} at {t:g} s")
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)


def _ffmpeg_frame(path: str, t: float, width: int, out: str) -> bool:
    try:
        gated = admit(path)  # the same gate as every decoder: forced demuxer, file protocol only
    except MediaError:
        return False
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-ss", f"{t:.3f}", *gated.ffmpeg_input(), "-frames:v", "1",
           "-vf", f"scale={width}:-2", "-q:v", "5", "-f", "image2", "-c:v", "mjpeg", out]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0 and os.path.getsize(out) > 0
