"""vPDQ's hash file: read one (a query from another tool) and write one (an export), both hostile-safe.

The format is the one ThreatExchange's vPDQ writes (``vpdq-hash-video``, ``vpdqio.cpp``): one line
per hashed frame, four comma-separated fields::

    FRAME_NUMBER,QUALITY,PDQ_HEX,TIMESTAMP
    12,100,e271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c,0.500

FRAME_NUMBER is the frame's index in the video's own frame sequence, QUALITY PDQ's 0-100 quality,
PDQ_HEX the 256-bit hash as 64 hex digits, TIMESTAMP seconds written with 3 decimals. (vpdq's
Python README prints hash before quality in its example loop; the files its tools write and read
put quality second, and so does this module. A file in the other order gets an error that says so.)

A file comes from anyone, so reading is bounded and strict: at most ``max_bytes`` and
``max_lines`` (checked before any parsing), exactly four fields a line, a 64-digit hex hash, an
integer quality in 0-100, frame numbers that increase and timestamps that are finite, >= 0 and
never go back. Any breach is a :class:`HashFileError` naming the line and the reason.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from astradup.errors import AstraDupError
from astradup.records import PDQ_BYTES

MAX_BYTES = 8 << 20  # 8 MiB: ~100k frames, 28 h of video at vPDQ's default one hash a second
MAX_LINES = 100_000
_HEX = re.compile(r"[0-9a-fA-F]{64}")
_INT = re.compile(r"[0-9]{1,12}")
_QUALITY = re.compile(r"[0-9]{1,3}")
_NUMBER = re.compile(r"[0-9]{1,12}(\.[0-9]{0,9})?")


class HashFileError(AstraDupError, ValueError):
    """A vPDQ hash file that cannot be read; the message names the line and why (safe to show a client)."""


@dataclass(frozen=True)
class VpdqHashes:
    """A video's vPDQ hash: one row per hashed frame."""

    frame_numbers: np.ndarray  # int64 [N]
    hashes: np.ndarray  # uint8 [N, 32], bytes in the hex text's order
    quality: np.ndarray  # uint8 [N], 0-100
    timestamps: np.ndarray  # float64 [N] seconds


def parse_vpdq(data: bytes | str, *, max_bytes: int = MAX_BYTES, max_lines: int = MAX_LINES) -> VpdqHashes:
    """The frames of a vPDQ hash file's text; :class:`HashFileError` on anything else."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise HashFileError(f"hash file is {len(raw)} bytes, more than the {max_bytes} allowed")
    if raw.count(b"\n") > max_lines:  # before splitting: a file of millions of lines costs one scan
        raise HashFileError(f"hash file has more than {max_lines} lines")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise HashFileError(f"hash file is not ASCII text (byte {e.start})") from None
    # Split on "\n" only (a "\r\n" file loses its "\r" below): splitlines() would also split on
    # "\r", "\f", "\x1c"..., so a file of 8 MiB of those would pass the line cap above as one line
    # and then become millions of list items.
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise HashFileError("hash file is empty: no frame lines")
    n = len(lines)
    frames = np.empty(n, np.int64)
    hashes = np.empty((n, PDQ_BYTES), np.uint8)
    quality = np.empty(n, np.uint8)
    times = np.empty(n, np.float64)
    for i, line in enumerate(lines):
        where = f"line {i + 1}"
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 4:
            raise HashFileError(f"{where}: {len(fields)} comma-separated fields, expected 4 "
                                "(frame number, quality, 64-hex PDQ hash, timestamp)")
        frame, qual, hexhash, ts = fields
        if not _HEX.fullmatch(hexhash):
            hint = (" (the hash is the 2nd field: vPDQ files put quality 2nd and the hash 3rd)"
                    if _HEX.fullmatch(qual) else "")
            raise HashFileError(f"{where}: field 3 is not a 64-digit hex PDQ hash{hint}")
        if not _INT.fullmatch(frame):
            raise HashFileError(f"{where}: frame number {frame[:20]!r} is not a non-negative integer")
        if not _QUALITY.fullmatch(qual) or int(qual) > 100:
            raise HashFileError(f"{where}: quality {qual[:20]!r} is not an integer from 0 to 100")
        if not _NUMBER.fullmatch(ts) or not math.isfinite(float(ts)):
            raise HashFileError(f"{where}: timestamp {ts[:20]!r} is not a number of seconds >= 0")
        frames[i], quality[i], times[i] = int(frame), int(qual), float(ts)
        hashes[i] = np.frombuffer(bytes.fromhex(hexhash), np.uint8)
        if i and frames[i] <= frames[i - 1]:
            raise HashFileError(f"{where}: frame number {frames[i]} does not follow {frames[i - 1]} "
                                "(frame numbers must increase)")
        if i and times[i] < times[i - 1]:
            raise HashFileError(f"{where}: timestamp {ts} is before the previous line's "
                                "(timestamps must not go back)")
    return VpdqHashes(frames, hashes, quality, times)


def format_vpdq(h: VpdqHashes) -> str:
    """The text vPDQ's own writer produces for these frames (``parse_vpdq`` reads it back)."""
    return "".join(f"{int(f)},{int(q)},{bytes(row).hex()},{float(t):.3f}\n"
                   for f, q, row, t in zip(h.frame_numbers, h.quality, h.hashes, h.timestamps))


def frame_numbers(timestamps: np.ndarray, native_fps: float | None) -> np.ndarray:
    """vPDQ's frame numbers for sampled times: the index of the native frame on screen at each time
    (the frame decoding picked), or the sample's own index where the frame rate is unknown or does
    not give increasing numbers (a clip slower than the sampling)."""
    t = np.asarray(timestamps, np.float64).reshape(-1)
    idx = np.arange(len(t), dtype=np.int64)
    if native_fps and math.isfinite(native_fps) and native_fps > 0:
        native = np.floor(t * float(native_fps) + 1e-6).astype(np.int64)
        if len(native) and native.min() >= 0 and np.all(np.diff(native) > 0):
            return native
    return idx
