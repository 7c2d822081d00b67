"""A track's audio as mono float32 PCM: decoded in-process by PyAV, or by an ffmpeg pipe.

An ordinary clip's audio is decoded in-process by PyAV (the same libavcodec + libswresample as
ffmpeg, so the same PCM) after the frames: starting an ffmpeg process per file cost more CPU than
decoding its audio. The ffmpeg pipe, in a thread alongside the frames, remains for long tracks,
for streamed decodes (its chunks feed the audio features as they come) and for any track PyAV
fails on, so odd files keep the pipe's result. Figures behind these choices: docs/scaling.md,
"Decoding and audio design measurements".
"""
from __future__ import annotations

import math
import subprocess
import tempfile
import threading
from fractions import Fraction
from typing import Callable

import numpy as np

from astradup.errors import MediaError
from astradup.io.child_deadline import kill_timer
from astradup.io.gate import NO_DEADLINE, Deadline, admit

AUDIO_CHUNK = 1 << 20  # bytes per read from the ffmpeg audio pipe
# False sends every track to the ffmpeg pipe (how benchmarks measure the old cost, tests the reference).
INPROCESS_AUDIO = True
# Tracks up to this long (the decoded duration) are decoded in-process, after the frames; longer
# ones by the ffmpeg pipe, alongside the frames. Memory does not set the limit: both hold the whole
# PCM (4 bytes x sample_rate per second, 53 MB for 20 min at 11025 Hz); what grows with length is
# the wall time: in-process, the audio's CPU adds to the frames' instead of overlapping them in a
# second process. 20 min is sampling.STREAM_FRAMES at the default 1 fps, so every file decode_video
# gets at the default settings is decoded in-process; longer ones only come here under a lower
# decode.fps.
INPROCESS_AUDIO_MAX_S = 1200.0


class AudioPipe:
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
        self._timer = kill_timer(self._proc, deadline)
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


def _trim_samples(max_seconds: float, sample_rate: int) -> int:
    """How many samples ``ffmpeg -t`` (as AudioPipe formats it) lets through: the %.6f text read as
    microseconds, rescaled to samples rounding half up (av_rescale), as the atrim it inserts does."""
    whole, _, frac = f"{max_seconds:.6f}".partition(".")
    us = int(whole) * 1_000_000 + int(frac or 0)
    return (us * int(sample_rate) + 500_000) // 1_000_000


def pcm_in_process(path: str, sample_rate: int, seconds: float, max_seconds: float,
                   deadline: Deadline = NO_DEADLINE) -> np.ndarray:
    """What ``AudioPipe(path, sample_rate, seconds, max_seconds).result()`` returns, via PyAV.

    The same libavcodec decoder and libswresample conversion (mono downmix, resampling) as the
    ffmpeg command, without starting a process (less than half the pipe's CPU, its start-up
    included). Raises on anything at all (PyAV missing, a decode error, no samples): the caller then
    runs the pipe, so an odd track gets exactly the pipe's result or error. decord's AudioReader
    (cheaper still) is not used: it flushes its resampler after every decoded frame, which delays
    the track and leaves it far from the pipe's PCM (docs/scaling.md has the figures).
    """
    import av

    limit = _trim_samples(max_seconds, sample_rate) if max_seconds > 0 else None
    # As AudioPipe: a second of slack over the container's duration, the first guess capped.
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


def audio_in_process(seconds: float) -> bool:
    """Whether a track of ``seconds`` is decoded in-process first (see INPROCESS_AUDIO_MAX_S)."""
    return INPROCESS_AUDIO and seconds <= INPROCESS_AUDIO_MAX_S


def decode_pcm(path: str, sample_rate: int, seconds: float, max_seconds: float,
               deadline: Deadline = NO_DEADLINE) -> np.ndarray:
    """The whole mono PCM of a track: in-process when it is modest (INPROCESS_AUDIO_MAX_S) and
    that works, else the ffmpeg pipe, whose RuntimeError (ffmpeg's message) is the one raised.
    The gate's refusal and the time budget (MediaError) are final: the pipe is not tried."""
    if audio_in_process(seconds):
        try:
            return pcm_in_process(path, sample_rate, seconds, max_seconds, deadline)
        except MediaError:
            raise
        except Exception:  # noqa: BLE001 - the pipe decides what an odd track gives
            pass
    return AudioPipe(path, sample_rate, seconds, max_seconds, deadline=deadline).result()


class PendingPcm:
    """The whole PCM of one track, decoded the way its length calls for: a long track by the ffmpeg
    pipe, started at once so that it runs beside the frames; a modest one in-process (then the
    pipe if that fails) when :meth:`result` asks for it, once the frames are in."""

    def __init__(self, path: str, sample_rate: int, seconds: float, max_seconds: float,
                 deadline: Deadline = NO_DEADLINE) -> None:
        self._args = (path, sample_rate, seconds, max_seconds)
        self._deadline = deadline
        self._pipe = None if audio_in_process(seconds) else \
            AudioPipe(path, sample_rate, seconds, max_seconds, deadline=deadline)

    def cancel(self) -> None:
        """Stop a running pipe (the video turned out unusable): no audio decoded for nothing."""
        if self._pipe is not None:
            self._pipe.cancel()

    def result(self) -> np.ndarray:
        """The PCM, clipped to [-1, 1]; raises as :func:`decode_pcm` does."""
        if self._pipe is not None:
            return self._pipe.result()
        return decode_pcm(*self._args, self._deadline)
