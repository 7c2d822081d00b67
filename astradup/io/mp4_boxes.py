"""The ISO-BMFF (MP4/MOV) box reader: is a file MP4, and its mvhd duration as FFmpeg 5.1 reads it.

probe()'s in-process path (io/probe.py) must give the system ffprobe's answer; for the MP4 family
the two FFmpeg versions disagree on the format duration, so the mvhd box is read here directly.
probe() also tells a truncated MP4 from a file that is not media by its first box.
"""
from __future__ import annotations

import os
import struct
from typing import Any, Iterator


def looks_like_mp4(path: str) -> bool:
    """ISO-BMFF files start with a box whose type is 'ftyp' at byte 4."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return len(head) >= 8 and head[4:8] == b"ftyp"


def mvhd_duration_us(path: str) -> int | None:
    """The format duration FFmpeg 5.1's MOV demuxer sets: the first moov's mvhd duration rescaled to
    microseconds (av_rescale, rounding to nearest). None for anything unusual: no or several mvhd,
    a fragmented file (mvex: its duration comes from elsewhere), a compressed or damaged moov."""
    try:
        with open(path, "rb") as f:
            moov = find_box(f, 0, os.fstat(f.fileno()).st_size, b"moov")
            if moov is None:
                return None
            children = list(iter_boxes(f, moov[0], moov[1]))
            if any(t == b"mvex" for t, _, _ in children):
                return None
            mvhd = [(start, end) for t, start, end in children if t == b"mvhd"]
            if len(mvhd) != 1 or mvhd[0][1] - mvhd[0][0] < 20:
                return None
            f.seek(mvhd[0][0])
            head = f.read(32)
    except (OSError, ValueError, struct.error):
        return None
    version = head[0]
    if version == 1:
        if len(head) < 32:
            return None
        time_scale, duration = struct.unpack(">IQ", head[20:32])
    else:
        time_scale, duration = struct.unpack(">II", head[12:20])
    if time_scale <= 0 or time_scale > 0x7FFFFFFF:
        return None  # 5.1 reads it as a signed int and replaces a bad one with 1: not modelled
    return (duration * 1000000 + time_scale // 2) // time_scale


def iter_boxes(f: Any, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the ISO-BMFF boxes laid end to end in [start, end)."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        head = f.read(16)
        if len(head) < 8:
            raise ValueError("short box header")
        size, kind = struct.unpack(">I4s", head[:8])
        header = 8
        if size == 1:
            if len(head) < 16:
                raise ValueError("short box header")
            size, header = struct.unpack(">Q", head[8:16])[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError("box overruns its parent")
        yield kind, pos + header, pos + size
        pos += size


def find_box(f: Any, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    """Payload span of the first top-level box of ``kind`` (FFmpeg skips any later duplicate)."""
    for t, s, e in iter_boxes(f, start, end):
        if t == kind:
            return s, e
    return None
