"""Decode one video into sampled RGB frames and mono PCM: the two ways out, whole and streamed.

The codecs are reached through io/frames.py (the frame readers and their one fallback chain) and
io/pcm.py (the audio); what is sampled is io/sampling.py's plan. :func:`decode_video` returns every
frame and the whole PCM at once (what features, search and the embedder pool want for ordinary
clips); :func:`decode_streamed` hands them over in chunks to callbacks, so a file of any length
(more than sampling.STREAM_FRAMES samples: sampling.should_stream) is decoded with bounded memory.
Both pick the same frames through the same readers, and neither lets a broken audio track sink
the file.
"""
from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple

import numpy as np

from astradup.config import DecodeConfig, check_decode
from astradup.errors import MediaError
from astradup.io.frames import FrameReader, read_all, read_chunks, readers_for
from astradup.io.gate import Deadline, check_limits
from astradup.io.ids import content_id
from astradup.io.pcm import AudioPipe, PendingPcm, decode_pcm
from astradup.io.probe import probe
from astradup.io.sampling import STREAM_CHUNK, plan
from astradup.records import Decoded, VideoRef

NO_FRAME = "truncated or corrupt video stream (no decodable frame)"


class _Start(NamedTuple):
    """What both ways out settle before decoding: the file's meta, budget, plan and readers."""

    path: str
    meta: dict[str, Any]
    deadline: Deadline
    duration: float
    fps: float
    size: int
    times: np.ndarray
    readers: list[FrameReader]


def _start(path: str, cfg: DecodeConfig, meta: dict[str, Any] | None) -> _Start:
    """Check the settings and the file's limits (``meta``: its probe() result, when the caller
    already has it: saves a second probe), start the time budget and plan the samples."""
    path = os.fspath(path)
    check_decode(cfg)
    meta = dict(probe(path) if meta is None else meta)
    check_limits(meta, cfg, path)
    duration, fps, size, times = plan(meta, cfg)
    readers = readers_for(cfg.decoder, fps, int(meta.get("rotation") or 0), cfg.max_pixels)
    return _Start(path, meta, Deadline(cfg.max_decode_seconds, path), duration, fps, size, times, readers)


def decode_video(path: str, ref: VideoRef, cfg: DecodeConfig,
                 meta: dict[str, Any] | None = None) -> Decoded:
    """Sampled frames + mono audio of one file; MediaError if no frame can be decoded.

    A track whose audio fails to decode is not fatal (the visual evidence is still worth indexing):
    ``audio`` is then None and ``meta['audio_error']`` says why. ``meta`` is the file's
    :func:`probe` result when the caller already has it (saves a second ffprobe). Everything is
    held at once: for long files (sampling.should_stream) use :func:`decode_streamed`. Frames come
    from the PyAV sampler when ``cfg.decoder`` is pyav_fast, else (or when it fails or gives none)
    from decord, else from the ffmpeg pipe; ``meta['decoder']`` says which, ``meta['pyav_error']`` /
    ``meta['decord_error']`` why one before it gave nothing.
    """
    s = _start(path, cfg, meta)
    path, meta, deadline = s.path, s.meta, s.deadline
    audio_limit = s.duration if cfg.max_seconds > 0 else 0.0
    pending = PendingPcm(path, cfg.sample_rate, s.duration, audio_limit, deadline) \
        if meta.get("has_audio") else None
    info: dict[str, Any] = {}
    try:
        try:
            frames = read_all(s.readers, path, s.times, s.size, deadline, info)
        except OSError as e:
            raise MediaError(path, f"cannot run ffmpeg ({e})") from e
        if len(frames) == 0:
            raise MediaError(path, NO_FRAME)
    except BaseException:
        if pending is not None:
            pending.cancel()
        raise

    audio = None
    if pending is not None:
        try:
            audio = pending.result()
        except Exception as e:  # noqa: BLE001 - a broken audio track is recorded, never fatal
            meta["audio_error"] = str(e) or type(e).__name__
    deadline.check()  # an audio decode cut short by the budget does not pass as a file without sound
    meta.update(info)
    meta["sampled_fps"] = s.fps
    meta["frames_expected"] = len(s.times)  # more than len(frames) when the stream ends early
    return Decoded(ref=ref, timestamps=s.times[: len(frames)].copy(), frames=frames, audio=audio,
                   sample_rate=int(cfg.sample_rate), meta=meta)


def decode_streamed(path: str, cfg: DecodeConfig, on_frames: Callable[[np.ndarray, np.ndarray], None],
                    on_audio: Callable[[np.ndarray], None] | None,
                    meta: dict[str, Any] | None = None, chunk: int = STREAM_CHUNK) -> dict[str, Any]:
    """Decode a file of any length with bounded memory; returns its meta (as Decoded.meta).

    The same frames and PCM as :func:`decode_video`, handed over as they are decoded instead of
    returned: ``on_frames(timestamps, frames)`` gets chunks of at most ``chunk`` frames in order
    (9.6 MB at 224 px), ``on_audio(pcm)`` gets float32 PCM chunks of pcm.AUDIO_CHUNK bytes from the
    audio thread while the frames decode (so it must not share unlocked state with on_frames).
    Peak memory is a chunk of each plus what the callbacks keep. MediaError if no frame decodes;
    an audio failure (ffmpeg's or on_audio's) is recorded in ``meta['audio_error']`` as in
    decode_video, and ``meta['audio_samples']`` says how many samples were handed over. A reader
    failing part way hands over to the next at the first frame not delivered: ``meta['decoder']``
    then names those that delivered, joined by "+".
    """
    s = _start(path, cfg, meta)
    path, meta, deadline, times = s.path, s.meta, s.deadline, s.times
    job = AudioPipe(path, cfg.sample_rate, s.duration, s.duration if cfg.max_seconds > 0 else 0.0,
                    sink=on_audio, deadline=deadline) if meta.get("has_audio") and on_audio is not None else None
    info: dict[str, Any] = {}
    got = 0
    try:
        try:
            for block in read_chunks(s.readers, path, times, s.size, chunk, deadline, info):
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
    meta["sampled_fps"] = s.fps
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
    return decode_pcm(path, sample_rate, float(meta.get("duration") or 0.0), 0.0)
