"""Decode one video into sampled RGB frames and mono PCM: the only place that touches codecs.

Frames are sampled at ``cfg.fps`` at the centre of each sampling period, t_k = (k + 0.5) / fps,
so a copy that starts a fraction of a period later still samples nearly the same pictures, and are
resized once, at decode time, to ``frame_size`` x ``frame_size`` (every feature works on that).
decord does the work (it seeks and skips without converting unwanted frames); an ffmpeg pipe is
the fallback for files decord cannot open or read. ``decode.decoder = pyav_fast`` (opt-in) puts
a PyAV sampler first (:func:`pyav_samples`: one thread, non-reference frames and the loop filter
skipped, about a third less frame-decoding CPU), decord and then ffmpeg behind it. Audio of an ordinary clip is decoded in-process
by PyAV (the same libavcodec + libswresample as ffmpeg, so the same PCM) after the frames: starting
an ffmpeg process per file cost more CPU than decoding its audio. The ffmpeg pipe, in a thread
alongside the frames, remains for long tracks, for streamed decodes (its chunks feed the audio
features as they come) and for any track PyAV fails on, so odd files keep the pipe's result.

Two ways out: :func:`decode_video` returns every frame and the whole PCM at once (what features,
search and the embedder pool want for ordinary clips); :func:`decode_streamed` hands them over in
chunks to callbacks, so a file of any length (more than STREAM_FRAMES samples) is decoded with
bounded memory. Both pick the same frames. Rotated files come out upright from every decoder:
decord 0.6 and ffmpeg both apply the display matrix (tests/test_bad_media.py checks 90/180/270),
the PyAV sampler turns its pictures by probe()'s rotation, the same matrix.
"""
from __future__ import annotations

import contextlib
import math
import os
import subprocess
import tempfile
import threading
from fractions import Fraction
from typing import Any, Callable, Iterator

import numpy as np

from astradup.config import DecodeConfig, check_decode
from astradup.errors import MediaError
from astradup.io.probe import probe, pyav_video_stream
from astradup.io.gate import NO_DEADLINE, Deadline, admit, check_limits, decord_reader
from astradup.io.ids import content_id
from astradup.records import Decoded, VideoRef

# Frames per decord get_batch call: bounds the transient memory to ~5 MB at 224 px. Measured on
# 2 busy cores, 1 fps to 224 px, best of 3 (58 s 640x360 / 60 s 1280x720 H.264, keyint 250):
# get_batch in chunks of 32 0.77 / 2.06 s, one get_batch of all 0.83 / 2.13 s, one seek per
# sample (vr[i]) 0.82 / 2.11 s, ffmpeg fps-filter pipe 0.82 / 2.34 s. All decode every frame of
# each GOP, so they are close; chunked get_batch is the fastest and the leanest.
BATCH = 32
AUDIO_CHUNK = 1 << 20  # bytes per read from the ffmpeg audio pipe
NO_FRAME = "truncated or corrupt video stream (no decodable frame)"
# Videos with more sampled frames than this are decoded as a stream (see decode_streamed): at
# 224 px a frame is 150 KB, so 1200 frames (20 min at 1 fps) are 180 MB held, pickled and sent
# to the embedder, about the most a decode task should hold; a 3-hour file would be 1.6 GB.
STREAM_FRAMES = 1200
# Frames per chunk of a streamed decode: 64 x 150 KB = 9.6 MB, two embedder batches. pHash and
# the embedder make float copies several times a chunk's size, so a small chunk keeps the peak
# low at no cost in speed: decord reads 32 at a time (BATCH) and the embedder runs 32 at a time
# anyway. Measured on the three-hour test file at 0.5 fps, one process, 2 busy cores: peak RSS
# 0.78-0.88 GB with 64, 0.93 GB with 128, 0.98-1.23 GB with 256; 44-46 s each.
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


def _frame_indices(starts: np.ndarray, ends: np.ndarray, avg_fps: float,
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


def thread_budget() -> int:
    """Decoder threads this process may use: $OMP_NUM_THREADS when set (Ray sets it to a task's
    CPU share, 1 for a decode task), else 0 = the codec's own choice (one per core).

    A decode task that already owns one of the cores should not start a thread per core: on 2
    cores decord's automatic threading cost 13.5 ms of CPU per media second against 10.9 ms for
    one thread (dev benchmark, 640x360 H.264, 1 fps to 224 px; benchmarks/ingest_speed.py), and
    the extra threads compete with the other decode task and the embedder.
    """
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    try:
        return max(0, int(raw)) if raw else 0
    except ValueError:
        return 0


def _decode_decord(path: str, times: np.ndarray, size: int, threads: int | None = None,
                   deadline: Deadline = NO_DEADLINE) -> np.ndarray:
    """Frames at ``times`` via decord, read in sorted batches; fewer rows if the stream ends early."""
    import decord  # imported here: a worker that only searches never needs the codec libraries

    vr = decord_reader(path, ctx=decord.cpu(0), width=size, height=size,
                       num_threads=thread_budget() if threads is None else int(threads))
    try:
        n = len(vr)
        ts = vr.get_frame_timestamp(np.arange(n)) if n else np.zeros((0, 2))
        idx = _frame_indices(np.asarray(ts[:, 0], np.float64), np.asarray(ts[:, 1], np.float64),
                             float(vr.get_avg_fps() or 0.0), times.astype(np.float64))
        idx = idx[idx >= 0]  # times are sorted, so a truncated stream loses only the tail
        out = np.empty((len(idx), size, size, 3), np.uint8)
        for i in range(0, len(idx), BATCH):
            deadline.check()
            out[i:i + BATCH] = vr.get_batch(idx[i:i + BATCH].tolist()).asnumpy()
        return out
    finally:
        del vr


# decode.decoder = pyav_fast: what PyAV is told to leave out. Non-reference frames (most B-frames)
# are not decoded at all, so a sample takes the last decoded picture before it (a few frames, about
# 0.1 s, early at most on x264's defaults); the loop filter (H.264's deblocking) is skipped, which
# leaves slightly blockier pixels. On dev20 (640x360 H.264, 1 fps to 224 px, one thread) frames cost
# 6.5 ms of CPU per media-second this way against 10.0 for decord (benchmarks/ingest_speed.py).
PYAV_SKIP_FRAME = "NONREF"
PYAV_SKIP_LOOP_FILTER = "all"


def pyav_samples(path: str, times: np.ndarray, size: int, *, skip_frame: str | None = PYAV_SKIP_FRAME,
                 skip_loop_filter: bool = True, rotation: int = 0,
                 stats: dict[str, int] | None = None,
                 deadline: Deadline = NO_DEADLINE) -> Iterator[np.ndarray]:
    """One ``size`` x ``size`` RGB frame per sample time, in order, decoded sequentially by PyAV on
    one thread: for each time, the latest decoded picture whose timestamp is <= t (the picture on
    screen at t among those decoded; the first one for times before it), as _frame_indices picks.

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


def _decode_pyav(path: str, times: np.ndarray, size: int, rotation: int = 0,
                 stats: dict[str, int] | None = None, **kw: Any) -> np.ndarray:
    """Frames at ``times`` via :func:`pyav_samples` in one array; fewer rows if the stream ends early."""
    blocks = list(_iter_pyav(path, times, size, max(1, len(times)), rotation, stats, **kw))  # one chunk at most
    return blocks[0] if blocks else np.zeros((0, size, size, 3), np.uint8)


def _iter_pyav(path: str, times: np.ndarray, size: int, chunk: int, rotation: int = 0,
               stats: dict[str, int] | None = None, **kw: Any) -> Iterator[np.ndarray]:
    """Frames at ``times`` via :func:`pyav_samples`, ``chunk`` at a time; ``kw`` as it takes them."""
    out = np.empty((min(chunk, len(times)), size, size, 3), np.uint8)
    got = k = 0
    for frame in pyav_samples(path, times, size, rotation=rotation, stats=stats, **kw):
        out[k] = frame
        k += 1
        got += 1
        if k == len(out):
            yield out
            k = 0
            if got < len(times):
                out = np.empty((min(chunk, len(times) - got), size, size, 3), np.uint8)
    if k:
        yield out[:k].copy()


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _ffmpeg_frames_cmd(path: str, times: np.ndarray, fps: float, size: int, max_pixels: int = 0) -> list[str]:
    """The ffmpeg command whose rgb24 output is the frames at ``times`` (see _decode_ffmpeg)."""
    if len(times) == 1 and times[0] < 0.5 / fps:  # a clip shorter than one period: its middle frame
        vf = f"select=gte(t\\,{float(times[0]):.6f}),scale={size}:{size}"
        extra = ["-frames:v", "1"]
    else:
        # Shifting pts back half a period and rounding up gives output k the last frame with
        # pts <= (k + 0.5) / fps: the same frame decord's timestamp lookup picks.
        vf = f"setpts=PTS-{0.5 / fps:.6f}/TB,fps={fps:.6f}:round=up,scale={size}:{size}"
        extra = []
    return ["ffmpeg", "-nostdin", "-loglevel", "error", *admit(path).ffmpeg_input(max_pixels), "-map", "0:v:0",
            "-an", "-sn",
            "-vf", vf, *extra, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]


def _read_frame(stream, frame: np.ndarray) -> bool:
    """Fill one preallocated frame from a raw-video pipe; False when the stream ends first."""
    view = memoryview(frame).cast("B")
    filled = 0
    while filled < len(view):
        k = stream.readinto(view[filled:])
        if not k:
            return False
        filled += k
    return True


def _kill_timer(proc: subprocess.Popen, deadline: Deadline) -> threading.Timer | None:
    """A started timer that kills ``proc`` when ``deadline`` passes (None without a deadline)."""
    left = deadline.remaining()
    if left is None:
        return None
    timer = threading.Timer(left, proc.kill)
    timer.daemon = True
    timer.start()
    return timer


@contextlib.contextmanager
def _killed_at(proc: subprocess.Popen, deadline: Deadline) -> Iterator[None]:
    """Kill ``proc`` when ``deadline`` passes (a blocked pipe read then ends); on leaving, raise the
    deadline's MediaError if that is what ended it."""
    timer = _kill_timer(proc, deadline)
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
    deadline.check()


def _decode_ffmpeg(path: str, times: np.ndarray, fps: float, size: int,
                   deadline: Deadline = NO_DEADLINE, max_pixels: int = 0) -> np.ndarray:
    """Fallback: ffmpeg's fps filter picks, for output k, the frame on screen at (k + 0.5) / fps.

    Frames are read one at a time into a preallocated array and ffmpeg is stopped as soon as enough
    have arrived, so a damaged file cannot make us buffer more than the frames we keep.
    """
    n = len(times)
    cmd = _ffmpeg_frames_cmd(path, times, fps, size, max_pixels)
    # Grown as frames arrive rather than sized from the container's duration, which can be bogus
    # on exactly the damaged files that end up here.
    out = np.empty((min(n, 64), size, size, 3), np.uint8)
    got = 0
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        try:
            with _killed_at(proc, deadline):
                assert proc.stdout is not None
                while got < n:
                    if got == len(out):
                        out = np.concatenate([out, np.empty((min(n, 2 * got) - got, size, size, 3), np.uint8)])
                    if not _read_frame(proc.stdout, out[got]):
                        break
                    got += 1
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    return out if got == len(out) else out[:got].copy()


def _iter_decord(path: str, times: np.ndarray, size: int, chunk: int,
                 deadline: Deadline = NO_DEADLINE) -> Iterator[np.ndarray]:
    """Frames at ``times`` via decord, ``chunk`` at a time (see _decode_decord, which it mirrors)."""
    import decord

    vr = decord_reader(path, ctx=decord.cpu(0), width=size, height=size, num_threads=thread_budget())
    try:
        n = len(vr)
        ts = vr.get_frame_timestamp(np.arange(n)) if n else np.zeros((0, 2))
        idx = _frame_indices(np.asarray(ts[:, 0], np.float64), np.asarray(ts[:, 1], np.float64),
                             float(vr.get_avg_fps() or 0.0), times.astype(np.float64))
        idx = idx[idx >= 0]
        del ts
        for c0 in range(0, len(idx), chunk):
            out = np.empty((min(chunk, len(idx) - c0), size, size, 3), np.uint8)
            for i in range(0, len(out), BATCH):
                deadline.check()
                out[i:i + BATCH] = vr.get_batch(idx[c0 + i:c0 + min(i + BATCH, len(out))].tolist()).asnumpy()
            yield out
    finally:
        del vr


def _iter_ffmpeg(path: str, times: np.ndarray, fps: float, size: int, chunk: int,
                 skip: int = 0, deadline: Deadline = NO_DEADLINE, max_pixels: int = 0) -> Iterator[np.ndarray]:
    """Frames at ``times`` from the ffmpeg pipe, ``chunk`` at a time, after dropping the first
    ``skip`` (those another decoder already delivered). ffmpeg is killed when the caller stops."""
    got = 0
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(_ffmpeg_frames_cmd(path, times, fps, size, max_pixels), stdout=subprocess.PIPE,
                                stderr=err)
        try:
            assert proc.stdout is not None
            while got < len(times):
                out = np.empty((min(chunk, len(times) - got), size, size, 3), np.uint8)
                k = 0
                with _killed_at(proc, deadline):
                    while k < len(out):
                        if not _read_frame(proc.stdout, out[k]):
                            break
                        got += 1
                        if got > skip:
                            k += 1
                if k:
                    yield out if k == len(out) else out[:k].copy()
                if k < len(out):
                    return
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def iter_frames(path: str, times: np.ndarray, fps: float, size: int, chunk: int = STREAM_CHUNK,
                info: dict[str, Any] | None = None, decoder: str = "decord",
                rotation: int = 0, deadline: Deadline = NO_DEADLINE,
                max_pixels: int = 0) -> Iterator[np.ndarray]:
    """The frames :func:`decode_video` would return, as chunks of at most ``chunk`` frames.

    ``decoder="pyav_fast"`` (decode.decoder) starts with the PyAV sampler (``rotation``: probe()'s,
    which it applies itself); then, or first, decord; if one cannot open the file or fails part way
    (a damaged GOP), the next takes over from the first frame not yet delivered (decord seeks
    there; the ffmpeg pipe decodes and drops the earlier ones, never holding them). ``info``
    receives "decoder" (those that delivered, joined by "+") and "pyav_error" / "decord_error"
    for a decoder that failed.
    """
    info = info if info is not None else {}
    check_decode(DecodeConfig(decoder=decoder))
    done = 0
    used: list[str] = []
    if decoder == "pyav_fast":
        try:
            for block in _iter_pyav(path, times, size, chunk, rotation, deadline=deadline):
                done += len(block)
                yield block
        except MediaError:
            raise  # the gate's refusal or the time budget: no other decoder may try
        except Exception as e:  # noqa: BLE001 - anything odd goes to decord
            info["pyav_error"] = _first_line(e)
        else:
            if done:
                info["decoder"] = "pyav_fast"
                return
        if done:
            used.append("pyav_fast")
        if done and done >= len(times):  # it failed after the last frame (closing the file)
            info["decoder"] = "pyav_fast"
            return
    start = done
    try:
        for block in _iter_decord(path, times[start:], size, chunk, deadline):
            done += len(block)
            yield block
    except MediaError:
        raise
    except Exception as e:  # noqa: BLE001 - decord raises its own error types for odd files
        info["decord_error"] = _first_line(e)
    else:
        if done > start:
            info["decoder"] = "+".join([*used, "decord"])
            return
    if done > start:
        used.append("decord")
    info["decoder"] = "+".join([*used, "ffmpeg"])
    yield from _iter_ffmpeg(path, times, fps, size, chunk, skip=done, deadline=deadline, max_pixels=max_pixels)


class _AudioJob:
    """Mono float32 PCM of the first audio stream, decoded by ffmpeg while the frames decode.

    The pipe is drained by a thread (so ffmpeg never blocks on a full pipe) straight into one
    buffer sized from the duration (no list of chunks joined at the end, which would double the
    peak memory of a long track), and the process can be killed at once if the video turns out
    to be unusable, instead of decoding audio for nothing.
    """

    def __init__(self, path: str, sample_rate: int, seconds: float, max_seconds: float,
                 sink: Callable[[np.ndarray], None] | None = None,
                 deadline: Deadline = NO_DEADLINE) -> None:
        cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", *admit(path).ffmpeg_input(), "-map", "0:a:0",
               "-vn", "-sn", "-ac", "1", "-ar", str(int(sample_rate))]
        if max_seconds > 0:
            cmd += ["-t", f"{max_seconds:.6f}"]
        cmd += ["-f", "f32le", "-"]
        # Containers often round the duration: leave a second of slack before growing the buffer;
        # cap the first guess so a bogus duration cannot reserve gigabytes up front.
        guess = min(seconds + 1.0, 3600.0)
        # With a sink (a long track), PCM is handed over a chunk at a time and never kept whole.
        self._sink = sink
        self._sink_error: BaseException | None = None
        self._buf = bytearray(4 * int(math.ceil(guess * sample_rate)) if sink is None else AUDIO_CHUNK)
        self._filled = 0
        self._err = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err)
        self._deadline = deadline
        self._timer = _kill_timer(self._proc, deadline)
        self._thread = threading.Thread(target=self._drain if sink is None else self._drain_to_sink,
                                        name="astradup-audio", daemon=True)
        self._thread.start()

    def _drain_to_sink(self) -> None:
        """Read fixed-size chunks and pass each (clipped to [-1, 1]) to the sink; a sink error
        stops ffmpeg and is raised by :meth:`stream_result`. ``_filled`` counts all bytes read."""
        assert self._proc.stdout is not None and self._sink is not None
        have = 0  # bytes in self._buf not yet passed on (only a partial sample carries over)
        while True:
            with memoryview(self._buf) as view:
                k = self._proc.stdout.readinto(view[have:])
            if not k:
                break
            self._filled += k
            have += k
            usable = have - have % 4
            if usable < len(self._buf) - 4:  # keep filling: the sink wants whole chunks
                continue
            self._pass_on(usable)
            have -= usable
        if have - have % 4:
            self._pass_on(have - have % 4)

    def _pass_on(self, usable: int) -> None:
        pcm = np.frombuffer(bytes(self._buf[:usable]), np.float32).copy()
        self._buf[:len(self._buf) - usable] = self._buf[usable:]
        np.clip(pcm, -1.0, 1.0, out=pcm)
        if self._sink_error is not None:
            return
        try:
            assert self._sink is not None
            self._sink(pcm)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            self._sink_error = e
            if self._proc.poll() is None:
                self._proc.kill()

    def _drain(self) -> None:
        assert self._proc.stdout is not None
        while True:
            if self._filled == len(self._buf):
                self._buf.extend(bytes(max(AUDIO_CHUNK, len(self._buf) // 4)))
            with memoryview(self._buf) as view:
                k = self._proc.stdout.readinto(view[self._filled:])
            if not k:
                break
            self._filled += k

    def _finish(self) -> int:
        self._thread.join()
        rc = self._proc.wait()
        if self._timer is not None:
            self._timer.cancel()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        return rc

    def cancel(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._finish()
        self._err.close()
        self._buf = bytearray()

    def stream_result(self) -> int:
        """Samples handed to the sink; RuntimeError with ffmpeg's first message if none came."""
        rc = self._finish()
        self._err.seek(0)
        message = self._err.read().decode("utf-8", "replace").strip().splitlines()
        self._err.close()
        self._buf = bytearray()
        if self._sink_error is not None:
            raise self._sink_error
        self._deadline.check()
        if self._filled < 4:
            raise RuntimeError(message[0] if message else f"ffmpeg exited with {rc} and no audio")
        return self._filled // 4

    def result(self) -> np.ndarray:
        """The PCM, clipped to [-1, 1]; RuntimeError with ffmpeg's first message if none came."""
        rc = self._finish()
        self._err.seek(0)
        message = self._err.read().decode("utf-8", "replace").strip().splitlines()
        self._err.close()
        self._deadline.check()
        usable = self._filled - self._filled % 4
        if usable == 0:
            raise RuntimeError(message[0] if message else f"ffmpeg exited with {rc} and no audio")
        del self._buf[usable:]
        pcm = np.frombuffer(self._buf, np.float32)  # shares the buffer: no copy
        self._buf = bytearray()
        np.clip(pcm, -1.0, 1.0, out=pcm)
        return pcm


# Tracks up to this long (the decoded duration) are decoded in-process, after the frames; longer
# ones by the ffmpeg pipe, alongside the frames. Memory does not set the limit: both hold the whole
# PCM (4 bytes x sample_rate per second, 53 MB for 20 min at 11025 Hz). Measured on a 10-min stereo
# 44.1 kHz AAC track to 11025 Hz mono (25 MB of PCM), 2 busy cores: in-process peak RSS +33 MB,
# 1.1 s CPU; the pipe +25 MB here plus a 58 MB ffmpeg process. (decord's AudioReader, for the
# record: +112 MB, and +441 MB through ar[:].) What grows with length is the wall time: in-process,
# the audio's ~2 ms of CPU per media-second adds to the frames' instead of overlapping them in a
# second process. 20 min is STREAM_FRAMES at the default 1 fps, so every file decode_video gets at
# the default settings is decoded in-process; longer ones only come here under a lower decode.fps.
INPROCESS_AUDIO_MAX_S = 1200.0


def _trim_samples(max_seconds: float, sample_rate: int) -> int:
    """How many samples ``ffmpeg -t`` (as _AudioJob formats it) lets through: the %.6f text read as
    microseconds, rescaled to samples rounding half up (av_rescale), as the atrim it inserts does."""
    whole, _, frac = f"{max_seconds:.6f}".partition(".")
    us = int(whole) * 1_000_000 + int(frac or 0)
    return (us * int(sample_rate) + 500_000) // 1_000_000


def _pcm_in_process(path: str, sample_rate: int, seconds: float, max_seconds: float,
                    deadline: Deadline = NO_DEADLINE) -> np.ndarray:
    """What ``_AudioJob(path, sample_rate, seconds, max_seconds).result()`` returns, via PyAV.

    The same libavcodec decoder and libswresample conversion (mono downmix, resampling) as the
    ffmpeg command, without starting a process: 1.9 ms of CPU per media-second against 4.7 for
    the pipe, ffmpeg's start-up included (10 dev20 clips, 44.1 kHz stereo AAC to 11025 Hz mono).
    Raises on anything at all (PyAV missing, a decode error, no samples): the caller then runs the
    pipe, so an odd track gets exactly the pipe's result or error. decord's AudioReader (cheaper
    still, ~1 ms per media-second) is not used: it flushes its resampler after every decoded frame,
    which on the dev20 clips (44.1 -> 11.025 kHz) delayed the track by 16 samples and left it up to
    0.2-0.4 away from the pipe's PCM even re-aligned (correlation 0.02-0.4 as decoded).
    """
    import av

    limit = _trim_samples(max_seconds, sample_rate) if max_seconds > 0 else None
    # As _AudioJob: a second of slack over the container's duration, the first guess capped.
    size = int(math.ceil(min(seconds + 1.0, 3600.0) * sample_rate))
    buf = np.empty(max(1, min(size, limit) if limit is not None else size), np.float32)
    filled = 0

    def put(frames) -> None:
        nonlocal buf, filled
        for fr in frames:
            pcm = fr.to_ndarray().reshape(-1)
            if filled + len(pcm) > len(buf):
                grown = np.empty(max(filled + len(pcm), len(buf) + len(buf) // 4), np.float32)
                grown[:filled] = buf[:filled]
                buf = grown
            buf[filled:filled + len(pcm)] = pcm
            filled += len(pcm)

    # ffmpeg's -t cuts by timestamp, so cutting by sample count gives the same PCM only when the
    # timestamps count samples: a 1/sample_rate time base (MP4, MOV, Ogg, not Matroska's or FLV's
    # milliseconds), the first frame at the file's start, no gap before the cut. Otherwise a cut
    # is left to ffmpeg.
    next_pts = None
    with admit(path).open_pyav(metadata_errors="replace") as c:
        stream = c.streams.audio[0]
        start = Fraction(c.start_time, 1_000_000) if c.start_time is not None else None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=int(sample_rate))
        for packet in c.demux(stream):  # the last packet is empty: decoding it drains the decoder
            deadline.check()
            for frame in packet.decode():
                if limit is not None:  # only a cut needs the timestamps
                    counts = frame.pts is not None and frame.time_base == Fraction(1, frame.sample_rate)
                    if counts and next_pts is None:
                        counts = start is not None and frame.pts * frame.time_base == start
                    elif counts:
                        counts = frame.pts == next_pts
                    if not counts:
                        raise RuntimeError("timestamps do not count samples: the cut is left to ffmpeg -t")
                    next_pts = frame.pts + frame.samples
                put(resampler.resample(frame))
            if limit is not None and filled >= limit:
                break
        else:
            put(resampler.resample(None))
    n = filled if limit is None else min(filled, limit)
    if n == 0:
        raise RuntimeError("no audio samples decoded")
    pcm = buf[:n] if len(buf) - n <= sample_rate else buf[:n].copy()
    np.clip(pcm, -1.0, 1.0, out=pcm)
    return pcm


def _audio_in_process(seconds: float) -> bool:
    """Whether a track of ``seconds`` is decoded in-process first (see INPROCESS_AUDIO_MAX_S)."""
    return seconds <= INPROCESS_AUDIO_MAX_S


def _decode_pcm(path: str, sample_rate: int, seconds: float, max_seconds: float,
                deadline: Deadline = NO_DEADLINE) -> np.ndarray:
    """The whole mono PCM of a track: in-process when it is modest (INPROCESS_AUDIO_MAX_S) and
    that works, else the ffmpeg pipe, whose RuntimeError (ffmpeg's message) is the one raised.
    The gate's refusal and the time budget (MediaError) are final: the pipe is not tried."""
    if _audio_in_process(seconds):
        try:
            return _pcm_in_process(path, sample_rate, seconds, max_seconds, deadline)
        except MediaError:
            raise
        except Exception:  # noqa: BLE001 - the pipe decides what an odd track gives
            pass
    return _AudioJob(path, sample_rate, seconds, max_seconds, deadline=deadline).result()


def _plan(meta: dict[str, Any], cfg: DecodeConfig) -> tuple[float, float, int, np.ndarray]:
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
    :func:`decode_streamed` so that memory stays bounded whatever its duration."""
    return len(_plan(meta, cfg)[3]) > STREAM_FRAMES


def decode_video(path: str, ref: VideoRef, cfg: DecodeConfig,
                 meta: dict[str, Any] | None = None) -> Decoded:
    """Sampled frames + mono audio of one file; MediaError if no frame can be decoded.

    A track whose audio fails to decode is not fatal (the visual evidence is still worth indexing):
    ``audio`` is then None and ``meta['audio_error']`` says why. ``meta`` is the file's
    :func:`probe` result when the caller already has it (saves a second ffprobe). Everything is
    held at once: for long files (:func:`should_stream`) use :func:`decode_streamed`. Frames come
    from the PyAV sampler when ``cfg.decoder`` is pyav_fast, else (or when it fails or gives none)
    from decord, else from the ffmpeg pipe; ``meta['decoder']`` says which, ``meta['pyav_error']`` /
    ``meta['decord_error']`` why one before it gave nothing.
    """
    path = os.fspath(path)
    check_decode(cfg)
    meta = dict(probe(path) if meta is None else meta)
    check_limits(meta, cfg, path)
    deadline = Deadline(cfg.max_decode_seconds, path)
    duration, fps, size, times = _plan(meta, cfg)

    audio_limit = duration if cfg.max_seconds > 0 else 0.0
    # A modest track is decoded in-process once the frames are in; a long one by the pipe, started
    # now so that it runs beside the frames.
    later = bool(meta.get("has_audio")) and _audio_in_process(duration)
    job = _AudioJob(path, cfg.sample_rate, duration, audio_limit, deadline=deadline) \
        if meta.get("has_audio") and not later else None
    try:
        frames, decoder = None, "decord"
        decord_error = pyav_error = ""
        if cfg.decoder == "pyav_fast":
            try:
                frames, decoder = _decode_pyav(path, times, size, int(meta.get("rotation") or 0),
                                               deadline=deadline), "pyav_fast"
            except MediaError:
                raise  # the gate's refusal or the time budget: no other decoder may try
            except Exception as e:  # noqa: BLE001 - anything odd goes to decord
                pyav_error = _first_line(e)
            if frames is None or len(frames) == 0:
                frames, decoder = None, "decord"
        if frames is None:
            try:
                frames = _decode_decord(path, times, size, deadline=deadline)
            except MediaError:
                raise
            except Exception as e:  # noqa: BLE001 - decord raises its own error types for odd files
                decord_error = _first_line(e)
        if frames is None or len(frames) == 0:
            decoder = "ffmpeg"
            try:
                frames = _decode_ffmpeg(path, times, fps, size, deadline, cfg.max_pixels)
            except OSError as e:
                raise MediaError(path, f"cannot run ffmpeg ({e})") from e
        if len(frames) == 0:
            raise MediaError(path, NO_FRAME)
    except BaseException:
        if job is not None:
            job.cancel()
        raise

    audio = None
    if job is not None or later:
        try:
            audio = job.result() if job is not None else \
                _decode_pcm(path, cfg.sample_rate, duration, audio_limit, deadline)
        except Exception as e:  # noqa: BLE001 - a broken audio track is recorded, never fatal
            meta["audio_error"] = str(e) or type(e).__name__
    deadline.check()  # an audio decode cut short by the budget does not pass as a file without sound
    if pyav_error:
        meta["pyav_error"] = pyav_error
    if decord_error:
        meta["decord_error"] = decord_error
    meta["decoder"] = decoder
    meta["sampled_fps"] = fps
    meta["frames_expected"] = len(times)  # more than len(frames) when the stream ends early
    return Decoded(ref=ref, timestamps=times[: len(frames)].copy(), frames=frames, audio=audio,
                   sample_rate=int(cfg.sample_rate), meta=meta)


def decode_streamed(path: str, cfg: DecodeConfig, on_frames: Callable[[np.ndarray, np.ndarray], None],
                    on_audio: Callable[[np.ndarray], None] | None,
                    meta: dict[str, Any] | None = None, chunk: int = STREAM_CHUNK) -> dict[str, Any]:
    """Decode a file of any length with bounded memory; returns its meta (as Decoded.meta).

    The same frames and PCM as :func:`decode_video`, handed over as they are decoded instead of
    returned: ``on_frames(timestamps, frames)`` gets chunks of at most ``chunk`` frames in order
    (9.6 MB at 224 px), ``on_audio(pcm)`` gets float32 PCM chunks of AUDIO_CHUNK bytes from the
    audio thread while the frames decode (so it must not share unlocked state with on_frames).
    Peak memory is a chunk of each plus what the callbacks keep. MediaError if no frame decodes;
    an audio failure (ffmpeg's or on_audio's) is recorded in ``meta['audio_error']`` as in
    decode_video, and ``meta['audio_samples']`` says how many samples were handed over.
    """
    path = os.fspath(path)
    check_decode(cfg)
    meta = dict(probe(path) if meta is None else meta)
    check_limits(meta, cfg, path)
    deadline = Deadline(cfg.max_decode_seconds, path)
    duration, fps, size, times = _plan(meta, cfg)
    job = _AudioJob(path, cfg.sample_rate, duration, duration if cfg.max_seconds > 0 else 0.0,
                    sink=on_audio, deadline=deadline) if meta.get("has_audio") and on_audio is not None else None
    info: dict[str, Any] = {}
    got = 0
    try:
        try:
            for block in iter_frames(path, times, fps, size, chunk, info, cfg.decoder,
                                     int(meta.get("rotation") or 0), deadline, cfg.max_pixels):
                on_frames(times[got:got + len(block)].copy(), block)
                got += len(block)
        except OSError as e:
            raise MediaError(path, f"cannot run ffmpeg ({e})") from e
        if got == 0:
            raise MediaError(path, NO_FRAME)
    except BaseException:
        if job is not None:
            job.cancel()
        raise
    if job is not None:
        try:
            meta["audio_samples"] = job.stream_result()
        except Exception as e:  # noqa: BLE001 - a broken audio track is recorded, never fatal
            meta["audio_error"] = str(e) or type(e).__name__
    meta.update(info)
    meta["sampled_fps"] = fps
    meta["frames_expected"] = len(times)
    meta["streamed"] = True
    return meta


def decode_path(path: str, cfg: DecodeConfig) -> Decoded:
    """Decode a local file, naming it by its content hash."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MediaError(path, "file not found")
    st = os.stat(path)
    ref = VideoRef(video_id=content_id(path), uri=path, size=st.st_size, mtime=st.st_mtime)
    return decode_video(path, ref, cfg)


def decode_audio(path: str, sample_rate: int) -> np.ndarray | None:
    """Mono float32 PCM of a file's audio alone (None without an audio track), for tools that
    recompute audio features, e.g. the benchmark's window sweep."""
    meta = probe(path)
    if not meta.get("has_audio"):
        return None
    return _decode_pcm(path, sample_rate, float(meta.get("duration") or 0.0), 0.0)
