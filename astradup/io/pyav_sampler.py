"""The PyAV frame sampler: one thread decoding a stream in order, keeping the picture on screen at
each sample time (decode.decoder = pyav_fast, io/frames.py's PyAVReader).

What PyAV is told to leave out: non-reference frames (most B-frames) are not decoded at all, so a
sample takes the last decoded picture before it (a few frames, about 0.1 s, early at most on x264's
defaults); the loop filter (H.264's deblocking) is skipped, which leaves slightly blockier pixels.
That saves about a third of the frame-decoding CPU against decord (figures: docs/scaling.md,
"Decoding and audio design measurements").
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from astradup.io.gate import NO_DEADLINE, Deadline, admit
from astradup.io.probe import pyav_video_stream

PYAV_SKIP_FRAME = "NONREF"
PYAV_SKIP_LOOP_FILTER = "all"


def pyav_samples(path: str, times: np.ndarray, size: int, *, skip_frame: str | None = PYAV_SKIP_FRAME,
                 skip_loop_filter: bool = True, rotation: int = 0,
                 stats: dict[str, int] | None = None,
                 deadline: Deadline = NO_DEADLINE) -> Iterator[np.ndarray]:
    """One ``size`` x ``size`` RGB frame per sample time, in order, decoded sequentially by PyAV on
    one thread: for each time, the latest decoded picture whose timestamp is <= t (the picture on
    screen at t among those decoded; the first one for times before it), as sampling.frame_indices picks.

    Times count from the stream's start, as decord's timestamps do. Decoding stops once the last
    time is passed; a stream that ends early gives fewer frames (none past the end of its last
    packet). Pictures are resized as decord resizes them (a plain bilinear resize to size x size,
    converting to RGB in the same step: a mean 0.014 grey levels from decord's output for the same
    picture on the dev20 clips, 1.5-2.6 on sharp synthetic test patterns) and then turned upright by
    ``rotation`` (degrees counter-clockwise: probe()'s "rotation", the container's display matrix,
    which decord applies; an orientation only in the bitstream is ignored, as decord ignores it).
    A frame yielded for several times is the same array: copy it before changing it. ``skip_frame``
    (a PyAV skip_frame value, None = decode all) and ``skip_loop_filter`` choose what is left out;
    ``stats`` receives "packets" (demuxed) and "decoded" (pictures out of the decoder). Raises on
    anything odd (no video stream, timestamps going back, a rotation that is not a right angle);
    MediaError when ``deadline`` passes.
    """
    import av

    if rotation % 90:
        raise RuntimeError(f"rotation {rotation} is not a right angle")
    turns = (rotation // 90) % 4
    n = len(times)
    stats = stats if stats is not None else {}
    stats["packets"] = stats["decoded"] = 0
    if n == 0:
        return
    with admit(path).open_pyav(metadata_errors="replace") as c:
        s = pyav_video_stream(c, av)
        if s is None:
            raise RuntimeError("no video stream")
        cc = s.codec_context
        cc.thread_count = 1
        if skip_frame:
            cc.skip_frame = skip_frame
        if skip_loop_filter:  # read when the decoder opens, at the first packet
            cc.options = {**(cc.options or {}), "skip_loop_filter": PYAV_SKIP_LOOP_FILTER}
        tb = s.time_base
        origin = s.start_time  # decord's timestamps count from the stream's start
        end = None  # the latest packet end seen, in time_base units
        k = 0
        prev, prev_t, rgb = None, 0.0, None

        def picture() -> np.ndarray:
            nonlocal rgb
            if rgb is None:
                rgb = prev.to_ndarray(width=size, height=size, format="rgb24",
                                      interpolation="BILINEAR", threads=1)
                if turns:
                    rgb = np.rot90(rgb, turns)
            return rgb

        for packet in c.demux(s):  # the last packet is empty: decoding it drains the decoder
            deadline.check()
            stats["packets"] += packet.size > 0
            if packet.pts is not None:
                e = packet.pts + (packet.duration or 0)
                end = e if end is None else max(end, e)
            for fr in packet.decode():
                stats["decoded"] += 1
                if fr.pts is None:
                    continue
                if origin is None:
                    origin = fr.pts
                t = float((fr.pts - origin) * tb)
                if prev is not None and t < prev_t:
                    raise RuntimeError("picture timestamps go back")
                while k < n and prev is not None and times[k] < t:  # prev is on screen at times[k]
                    yield picture()
                    k += 1
                if k >= n:
                    return
                prev, prev_t, rgb = fr, t, None
        if prev is None:
            return
        # Past the last picture: as far as the stream lasts (its last packet's end), one nominal
        # frame period past the last picture when the packets carry no durations.
        last_end = float((end - origin) * tb) if end is not None and origin is not None else prev_t
        if last_end <= prev_t:
            rate = float(s.average_rate or 0) or float(s.base_rate or 0)
            last_end = prev_t + (1.0 / rate if rate > 0 else 0.0)
        while k < n and times[k] <= last_end + 1e-6:
            yield picture()
            k += 1
