"""The sampling plan: which instants of a video are decoded, and which stored frame shows each.

Frames are sampled at ``cfg.fps`` at the centre of each sampling period, t_k = (k + 0.5) / fps,
so a copy that starts a fraction of a period later still samples nearly the same pictures. Every
frame reader (io/frames.py) samples the same plan, so whichever decoder delivers, the times agree.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from astradup.config import DecodeConfig

# Videos with more sampled frames than this are decoded as a stream (decode.decode_streamed): at
# 224 px a frame is 150 KB, so 1200 frames (20 min at 1 fps) are 180 MB held, pickled and sent
# to the embedder, about the most a decode task should hold; a 3-hour file would be 1.6 GB.
STREAM_FRAMES = 1200
# Frames per chunk of a streamed decode: 64 x 150 KB = 9.6 MB, two embedder batches. pHash and
# the embedder make float copies several times a chunk's size, so a small chunk keeps the peak
# low at no cost in speed (measured: docs/scaling.md, "Decoding and audio design measurements").
STREAM_CHUNK = 64


def sample_times(duration: float, fps: float) -> np.ndarray:
    """Centres of the sampling periods inside [0, duration); one frame at the middle of a short clip."""
    if duration <= 0 or fps <= 0:
        return np.zeros((0,), np.float32)
    n = max(0, math.ceil(duration * fps - 0.5))
    t = (np.arange(n, dtype=np.float64) + 0.5) / fps
    t = t[t < duration]
    if len(t) == 0:
        t = np.array([duration / 2.0])
    return t.astype(np.float32)


def frame_indices(starts: np.ndarray, ends: np.ndarray, avg_fps: float,
                  times: np.ndarray) -> np.ndarray:
    """Index of the frame on screen at each time; -1 past the last decodable frame.

    Uses the stream's real timestamps (variable frame rate files are common from phones) and only
    falls back to ``t * avg_fps`` when the timestamps are unusable.
    """
    n = len(starts)
    if n == 0:
        return np.full(len(times), -1, np.int64)
    t0 = float(starts[0])
    usable = n == 1 or (np.all(np.diff(starts) >= 0) and starts[-1] > starts[0])
    if usable:
        idx = np.searchsorted(starts - t0, times, side="right") - 1
        last_end = float(max(ends[-1], starts[-1])) - t0
        # A frame's end time may be missing (== start) for the last frame: allow one nominal period.
        if ends[-1] <= starts[-1] and avg_fps > 0:
            last_end += 1.0 / avg_fps
    else:
        idx = np.floor(times * avg_fps).astype(np.int64) if avg_fps > 0 else np.zeros(len(times), np.int64)
        last_end = n / avg_fps if avg_fps > 0 else float("inf")
    idx = np.clip(idx, 0, n - 1)
    idx[times > last_end + 1e-6] = -1
    return idx.astype(np.int64)


def plan(meta: dict[str, Any], cfg: DecodeConfig) -> tuple[float, float, int, np.ndarray]:
    """(duration decoded, fps, frame size, sample times) for a probed file under ``cfg``."""
    duration = meta["duration"]
    if cfg.max_seconds and cfg.max_seconds > 0:
        duration = min(duration, float(cfg.max_seconds))
    fps, size = float(cfg.fps), int(cfg.frame_size)
    if fps <= 0 or size <= 0:
        raise ValueError(f"decode.fps and decode.frame_size must be > 0, got {fps}, {size}")
    return duration, fps, size, sample_times(duration, fps)


def should_stream(meta: dict[str, Any], cfg: DecodeConfig) -> bool:
    """Whether a probed file samples more than STREAM_FRAMES frames, i.e. must go through
    decode.decode_streamed so that memory stays bounded whatever its duration."""
    return len(plan(meta, cfg)[3]) > STREAM_FRAMES
