"""Sampled RGB frames of a video: one reader per decoder behind one interface, and their fallback chain.

Each decoder is one :class:`FrameReader`, written once, chunk by chunk: :meth:`FrameReader.read`
(everything at once, what decode_video wants) is the same reading as one chunk. decord does the
work by default (it seeks and skips without converting unwanted frames); an ffmpeg pipe is the
fallback for files decord cannot open or read; ``decode.decoder = pyav_fast`` puts the PyAV
sampler (io/pyav_sampler.py) first. :func:`read_chunks` runs the chain for both ways out, so a
whole decode and a streamed one fall back alike: a reader that fails part way hands over at the
first frame not yet delivered. Rotated files come out upright from every reader: decord 0.6 and
ffmpeg both apply the display matrix, the PyAV sampler turns its pictures by probe()'s rotation.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from abc import ABC, abstractmethod
from typing import Any, Iterator, Sequence

import numpy as np

from astradup.config import DecodeConfig, check_decode
from astradup.errors import MediaError
from astradup.io.child_deadline import killed_at
from astradup.io.gate import NO_DEADLINE, Deadline, admit, decord_reader
from astradup.io.pyav_sampler import PYAV_SKIP_FRAME, pyav_samples
from astradup.io.sampling import frame_indices

# Frames per decord get_batch call: bounds the transient memory to ~5 MB at 224 px; chunked
# get_batch was also the fastest way to read samples (docs/scaling.md, "Decoding and audio
# design measurements").
BATCH = 32
# First allocation of the ffmpeg reader, grown as frames arrive rather than sized from the
# container's duration, which can be bogus on exactly the damaged files that end up there.
FFMPEG_FIRST_ROWS = 64


def thread_budget() -> int:
    """Decoder threads this process may use: $OMP_NUM_THREADS when set (Ray sets it to a task's
    CPU share, 1 for a decode task), else 0 = the codec's own choice (one per core).

    A decode task that already owns one of the cores should not start a thread per core: decord's
    automatic threading cost more CPU per media second than one thread (docs/scaling.md), and the
    extra threads compete with the other decode task and the embedder.
    """
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    try:
        return max(0, int(raw)) if raw else 0
    except ValueError:
        return 0


def first_line(e: BaseException) -> str:
    """An error's first line (or its type's name): what meta records of a reader's failure."""
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _joined(blocks: list[np.ndarray], size: int) -> np.ndarray:
    if len(blocks) == 1:
        return blocks[0]
    return np.concatenate(blocks) if blocks else np.zeros((0, size, size, 3), np.uint8)


class FrameReader(ABC):
    """One decoder's way to the frames at given sample times (io/sampling.py's plan)."""

    name: str  # what meta["decoder"] calls it
    error_key: str  # the meta key that says why it failed

    @abstractmethod
    def chunks(self, path: str, times: np.ndarray, size: int, chunk: int, skip: int = 0,
               deadline: Deadline = NO_DEADLINE) -> Iterator[np.ndarray]:
        """``size`` x ``size`` RGB frames (uint8) at ``times[skip:]``, in order, in blocks of at most
        ``chunk`` (never empty); fewer in all when the stream ends early. Raises on a file this
        decoder cannot read; MediaError for the gate's refusal or when ``deadline`` passes."""

    def read(self, path: str, times: np.ndarray, size: int,
             deadline: Deadline = NO_DEADLINE) -> np.ndarray:
        """Frames at ``times`` in one array (a single chunk); fewer rows if the stream ends early."""
        return _joined(list(self.chunks(path, times, size, max(1, len(times)), deadline=deadline)), size)


class DecordReader(FrameReader):
    """decord, read in sorted batches of BATCH: seeks to the first sample wanted."""

    name, error_key = "decord", "decord_error"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads  # None: thread_budget()

    def chunks(self, path: str, times: np.ndarray, size: int, chunk: int, skip: int = 0,
               deadline: Deadline = NO_DEADLINE) -> Iterator[np.ndarray]:
        import decord  # imported here: a worker that only searches never needs the codec libraries

        vr = decord_reader(path, ctx=decord.cpu(0), width=size, height=size,
                           num_threads=thread_budget() if self.threads is None else int(self.threads))
        try:
            n = len(vr)
            ts = vr.get_frame_timestamp(np.arange(n)) if n else np.zeros((0, 2))
            idx = frame_indices(np.asarray(ts[:, 0], np.float64), np.asarray(ts[:, 1], np.float64),
                                float(vr.get_avg_fps() or 0.0), times[skip:].astype(np.float64))
            idx = idx[idx >= 0]  # times are sorted, so a truncated stream loses only the tail
            del ts
            for c0 in range(0, len(idx), chunk):
                out = np.empty((min(chunk, len(idx) - c0), size, size, 3), np.uint8)
                for i in range(0, len(out), BATCH):
                    deadline.check()
                    out[i:i + BATCH] = vr.get_batch(idx[c0 + i:c0 + min(i + BATCH, len(out))].tolist()).asnumpy()
                yield out
        finally:
            del vr


class PyAVReader(FrameReader):
    """The PyAV sampler (:func:`~astradup.io.pyav_sampler.pyav_samples`), its frames gathered in blocks.

    ``rotation``: probe()'s, which the sampler applies itself; ``skip_frame`` / ``skip_loop_filter``
    what it leaves out; ``stats`` receives its "packets" and "decoded" counts.
    """

    name, error_key = "pyav_fast", "pyav_error"

    def __init__(self, rotation: int = 0, *, skip_frame: str | None = PYAV_SKIP_FRAME,
                 skip_loop_filter: bool = True, stats: dict[str, int] | None = None) -> None:
        self.rotation, self.skip_frame, self.skip_loop_filter = rotation, skip_frame, skip_loop_filter
        self.stats = stats

    def chunks(self, path: str, times: np.ndarray, size: int, chunk: int, skip: int = 0,
               deadline: Deadline = NO_DEADLINE) -> Iterator[np.ndarray]:
        times = times[skip:]  # times count from the stream's start, so a later slice is still true
        out = np.empty((min(chunk, len(times)), size, size, 3), np.uint8)
        got = k = 0
        for frame in pyav_samples(path, times, size, skip_frame=self.skip_frame,
                                  skip_loop_filter=self.skip_loop_filter, rotation=self.rotation,
                                  stats=self.stats, deadline=deadline):
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


def _read_frame(stream: Any, frame: np.ndarray) -> bool:
    """Fill one preallocated frame from a raw-video pipe; False when the stream ends first."""
    view = memoryview(frame).cast("B")
    filled = 0
    while filled < len(view):
        k = stream.readinto(view[filled:])
        if not k:
            return False
        filled += k
    return True


class FFmpegReader(FrameReader):
    """The fallback pipe: ffmpeg's fps filter picks, for output k, the frame on screen at (k + 0.5) / fps.

    Frames are read one at a time into a preallocated array and ffmpeg is stopped as soon as enough
    have arrived, so a damaged file cannot make us buffer more than the frames we keep. Frames
    before ``skip`` (those another reader already delivered) are decoded and dropped, never held.
    """

    name, error_key = "ffmpeg", "ffmpeg_error"

    def __init__(self, fps: float, max_pixels: int = 0) -> None:
        self.fps, self.max_pixels = float(fps), int(max_pixels)

    def command(self, path: str, times: np.ndarray, size: int) -> list[str]:
        """The ffmpeg command whose rgb24 output is the frames at ``times``."""
        fps = self.fps
        if len(times) == 1 and times[0] < 0.5 / fps:  # a clip shorter than one period: its middle frame
            vf = f"select=gte(t\\,{float(times[0]):.6f}),scale={size}:{size}"
            extra = ["-frames:v", "1"]
        else:
            # Shifting pts back half a period and rounding up gives output k the last frame with
            # pts <= (k + 0.5) / fps: the same frame decord's timestamp lookup picks.
            vf = f"setpts=PTS-{0.5 / fps:.6f}/TB,fps={fps:.6f}:round=up,scale={size}:{size}"
            extra = []
        return ["ffmpeg", "-nostdin", "-loglevel", "error", *admit(path).ffmpeg_input(self.max_pixels),
                "-map", "0:v:0", "-an", "-sn",
                "-vf", vf, *extra, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]

    def chunks(self, path: str, times: np.ndarray, size: int, chunk: int, skip: int = 0,
               deadline: Deadline = NO_DEADLINE) -> Iterator[np.ndarray]:
        n = len(times)
        pos = 0  # frames read off the pipe, the dropped ones included
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(self.command(path, times, size), stdout=subprocess.PIPE, stderr=err)
            try:
                assert proc.stdout is not None
                while max(pos, skip) < n:
                    cap = min(chunk, n - max(pos, skip))
                    out = np.empty((min(cap, FFMPEG_FIRST_ROWS), size, size, 3), np.uint8)
                    k = 0
                    with killed_at(proc, deadline):
                        while k < cap:
                            if k == len(out):
                                out = np.concatenate([out, np.empty((min(cap, 2 * k) - k, size, size, 3), np.uint8)])
                            if not _read_frame(proc.stdout, out[k]):
                                break
                            pos += 1
                            if pos > skip:
                                k += 1
                    if k:
                        yield out if k == len(out) else out[:k].copy()
                    if k < cap:
                        return
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()


def readers_for(decoder: str, fps: float, rotation: int = 0, max_pixels: int = 0) -> list[FrameReader]:
    """The fallback chain for ``decode.decoder``: [PyAV,] decord, then the ffmpeg pipe.

    ``rotation``: probe()'s (the PyAV sampler applies it itself); ``max_pixels``: the gate's limit
    the ffmpeg pipe enforces.
    """
    check_decode(DecodeConfig(decoder=decoder))
    first: list[FrameReader] = [PyAVReader(rotation)] if decoder == "pyav_fast" else []
    return [*first, DecordReader(), FFmpegReader(fps, max_pixels)]


def read_chunks(readers: Sequence[FrameReader], path: str, times: np.ndarray, size: int, chunk: int,
                deadline: Deadline = NO_DEADLINE, info: dict[str, Any] | None = None) -> Iterator[np.ndarray]:
    """The frames at ``times`` from the first of ``readers`` that delivers, in chunks of at most ``chunk``.

    A reader that cannot open the file, or fails part way (a damaged GOP), hands over to the next
    at the first frame not yet delivered (decord seeks there; the ffmpeg pipe decodes and drops the
    earlier ones); one that ends without a frame hands over too, with no error to record. The
    gate's refusal and the time budget (MediaError) are final: no other reader may try. The last
    reader's errors are raised. ``info`` receives "decoder" (those that delivered, joined by "+")
    and each failed reader's ``error_key`` (e.g. "decord_error") with the first line of its error.
    """
    info = info if info is not None else {}
    done = 0
    used: list[str] = []
    for reader in readers[:-1]:
        start, failed = done, False
        try:
            for block in reader.chunks(path, times, size, chunk, skip=done, deadline=deadline):
                done += len(block)
                yield block
        except MediaError:
            raise
        except Exception as e:  # noqa: BLE001 - each decoder raises its own error types for odd files
            info[reader.error_key] = first_line(e)
            failed = True
        if done > start:
            used.append(reader.name)
            if not failed or done >= len(times):  # complete, or it failed after the last frame
                info["decoder"] = "+".join(used)
                return
    last = readers[-1]
    info["decoder"] = "+".join([*used, last.name])
    yield from last.chunks(path, times, size, chunk, skip=done, deadline=deadline)


def read_all(readers: Sequence[FrameReader], path: str, times: np.ndarray, size: int,
             deadline: Deadline = NO_DEADLINE, info: dict[str, Any] | None = None) -> np.ndarray:
    """:func:`read_chunks` as one array (a single chunk, so a reader failing part way gives way to
    the next from the first frame); fewer rows if the stream ends early, none if nothing decodes."""
    return _joined(list(read_chunks(readers, path, times, size, max(1, len(times)), deadline, info)), size)
