"""Container metadata via ffprobe, and how much two videos' metadata agree.

ffprobe is the first thing run on every file, so it is also where a bad file is recognised and
turned into a :class:`MediaError` whose reason a user can act on (empty, truncated, not a video...).
Metadata agreement is weak evidence on its own (many videos are 30 fps 16:9), which is why fusion
gives it a small weight; it mainly separates a trimmed or re-framed copy from an exact one.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
from typing import Any

from astradup.errors import MediaError

FFPROBE_TIMEOUT_S = 60.0

# Demuxers ffprobe uses for a single picture; such a "video" has one frame and no duration.
_IMAGE_FORMATS = re.compile(r"(_pipe$|^image2$|^gif$|^webp$|^apng$)")


def _ratio(text: str | None) -> float:
    """'30000/1001' -> 29.97; '0/0' or junk -> 0.0."""
    if not text:
        return 0.0
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            d = float(den)
            return float(num) / d if d else 0.0
        return float(text)
    except ValueError:
        return 0.0


def _float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(value: Any) -> int | None:
    f = _float(value)
    return int(f) if f is not None else None


def _clean_ffprobe_message(stderr: str, path: str) -> str:
    """ffprobe's first message line, plus its closing 'path: error' line when that differs.

    Both are kept because the first is specific ("moov atom not found") while the last is the
    plain verdict ("Invalid data found when processing input"); prefixes are stripped.
    """
    lines: list[str] = []
    for line in stderr.splitlines():
        line = re.sub(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*", "", line.strip())
        if line.startswith(path + ":"):
            line = line[len(path) + 1:].strip()
        if line and line not in lines:
            lines.append(line)
    if not lines:
        return "unknown error"
    return lines[0] if len(lines) == 1 else f"{lines[0]}; {lines[-1]}"


def _looks_like_mp4(path: str) -> bool:
    """ISO-BMFF files start with a box whose type is 'ftyp' at byte 4."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return len(head) >= 8 and head[4:8] == b"ftyp"


def _rotation(stream: dict[str, Any]) -> int:
    """Display rotation in degrees, counter-clockwise as ffprobe's display matrix gives it, in 0..359.

    Old files carry a clockwise 'rotate' tag instead; it is negated so both read the same way.
    """
    for sd in stream.get("side_data_list") or []:
        r = _float(sd.get("rotation"))
        if r is not None:
            return int(round(r)) % 360
    r = _float((stream.get("tags") or {}).get("rotate"))
    return int(round(-r)) % 360 if r is not None else 0


def _run_ffprobe(path: str) -> dict[str, Any]:
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", path]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=FFPROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise MediaError(path, f"ffprobe timed out after {FFPROBE_TIMEOUT_S:.0f} s") from None
    stderr = proc.stderr.decode("utf-8", "replace")
    try:
        info = json.loads(proc.stdout.decode("utf-8", "replace") or "{}")
    except json.JSONDecodeError:
        info = {}
    if proc.returncode != 0 or not info.get("format"):
        msg = _clean_ffprobe_message(stderr, path)
        if "moov atom not found" in stderr and _looks_like_mp4(path):
            raise MediaError(path, f"truncated or incomplete MP4 (ffprobe: {msg})")
        raise MediaError(path, f"not a media file (ffprobe: {msg})")
    return info


def probe(path: str) -> dict[str, Any]:
    """Describe a video file; raise MediaError if it is not something we can index."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MediaError(path, "file not found")
    if os.path.isdir(path):
        raise MediaError(path, "is a directory, not a file")
    size = os.path.getsize(path)
    if size == 0:
        raise MediaError(path, "empty file (0 bytes)")

    info = _run_ffprobe(path)
    fmt = info.get("format") or {}
    streams = info.get("streams") or []
    # Cover art in an .m4a/.mp3 shows up as a one-frame video stream flagged attached_pic.
    videos = [s for s in streams if s.get("codec_type") == "video"
              and not (s.get("disposition") or {}).get("attached_pic")]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    container = str(fmt.get("format_name") or "")
    if not videos:
        raise MediaError(path, "no video stream (audio-only or data file)")
    v = videos[0]

    duration = _float(fmt.get("duration"))
    if duration is None or duration <= 0:
        duration = _float(v.get("duration"))
    # An image demuxer with no duration (or a single frame) is a picture; an animated GIF/WebP
    # has a duration and frames, and is decoded like any video.
    if _IMAGE_FORMATS.search(container) and (duration is None or duration <= 0
                                             or _int(v.get("nb_frames")) in (None, 0, 1)):
        raise MediaError(path, f"a still image ({container}), not a video")
    if duration is None or duration <= 0:
        raise MediaError(path, "unreadable duration")

    fps = _ratio(v.get("avg_frame_rate")) or _ratio(v.get("r_frame_rate"))
    rotation = _rotation(v)
    width, height = int(v.get("width") or 0), int(v.get("height") or 0)
    if rotation in (90, 270):
        width, height = height, width
    a = audios[0] if audios else None
    return {
        "duration": float(duration),
        "fps": float(fps),
        "width": width,
        "height": height,
        "rotation": rotation,
        "vcodec": v.get("codec_name"),
        "acodec": a.get("codec_name") if a else None,
        "container": container,
        "size": int(size),
        "bit_rate": _int(fmt.get("bit_rate")),
        "has_audio": a is not None,
        "audio_sample_rate": _int(a.get("sample_rate")) if a else None,
    }


def _agreement(x: Any, y: Any) -> float | None:
    """min/max of two positive numbers: 1.0 when equal, falls as they diverge; None if unknown."""
    fx, fy = _float(x), _float(y)
    if fx is None or fy is None or fx <= 0 or fy <= 0:
        return None
    return min(fx, fy) / max(fx, fy)


def metadata_similarity(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Mean agreement of duration, aspect ratio and fps; 0.0 if none can be compared.

    Only ratios are used so that a re-encode to another resolution or bitrate (the most common
    copy) still agrees fully; codecs and containers are deliberately ignored for the same reason.
    """
    def aspect(m: dict[str, Any]) -> float | None:
        w, h = _float(m.get("width")), _float(m.get("height"))
        return w / h if w and h and w > 0 and h > 0 else None

    parts = [
        _agreement(a.get("duration"), b.get("duration")),
        _agreement(aspect(a), aspect(b)),
        _agreement(a.get("fps"), b.get("fps")),
    ]
    known = [p for p in parts if p is not None]
    return float(sum(known) / len(known)) if known else 0.0
