"""One JPEG frame of a video with ffmpeg: the one place the report and the service take pictures.

Both ``astradup report`` (frames written next to report.html) and the service's ``/thumbs`` cache
call :func:`jpeg_frame`, so the decoder gate, the scaling and the fall-back for a time past the
last frame are the same on a page and in a report.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from astradup.errors import MediaError
from astradup.io.gate import admit

FFMPEG_TIMEOUT_S = 60
JPEG_QUALITY = 5  # ffmpeg -q:v (2 best .. 31 worst): a thumbnail, not an archive


def _ffmpeg_jpeg(path: str, t: float, width: int, out: str | Path, pass_fds: tuple[int, ...],
                 timeout_s: float) -> bool:
    try:
        gated = admit(path)  # the same gate as every decoder: forced demuxer, file protocol only
    except MediaError:
        return False
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-ss", f"{t:.3f}", *gated.ffmpeg_input(),
           "-frames:v", "1", "-vf", f"scale={width}:-2", "-q:v", str(JPEG_QUALITY), "-f", "image2",
           "-c:v", "mjpeg", str(out)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, pass_fds=pass_fds)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0 and os.path.isfile(out) and os.path.getsize(out) > 0


def jpeg_frame(path: str, t: float, width: int, out: str | Path, pass_fds: tuple[int, ...] = (),
               timeout_s: float = FFMPEG_TIMEOUT_S) -> bool:
    """Write the frame at ``t`` seconds of the local file ``path``, ``width`` pixels wide, to ``out``.

    Past the last frame ffmpeg writes nothing (a duration rounded up, an interval ending at the
    very end), so an earlier time, then the first frame, stand in: the nearest picture beats none.
    False when no frame could be taken at all (not a video, a refused container, a timeout).
    ``pass_fds`` lets a child read a verified descriptor named by ``/proc/self/fd/N``.
    """
    t = max(0.0, float(t))
    return any(_ffmpeg_jpeg(path, when, width, out, pass_fds, timeout_s)
               for when in dict.fromkeys((t, max(0.0, t - 1.0), 0.0)))
