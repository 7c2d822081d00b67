"""Decoded video -> VideoFeatures, split in the two halves the pipeline runs on different pools.

``cpu_features`` (pHash, PDQ, audio, metadata) runs where decoding runs, so PCM never travels;
``add_embeddings`` runs in the embedder pool (GPU where present), so frames travel once.
The CLI search path calls the same two functions, so a query gets exactly the features an
indexed video gets.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from typing import Any

from astradup.config import Config
from astradup.features.audio import audio_features
from astradup.features.audio_stream import StreamingAudioFeatures
from astradup.features.pdq import pdq_frames
from astradup.features.phash import phash_frames
from astradup.records import Decoded, VideoFeatures, VideoRef


# Grey-level std below which a frame is black, a flat card or the dark end of a fade. Not higher: a
# night scene is dark and low in contrast, not blank (grey mean 7-10, std 5.4-6.2 for a whole
# hard-benchmark source, whose grayscale copy matched it at 0.77-0.82 and nothing else near that);
# at 6.0 its frames carried no evidence. 2.0-4.0 gave the same figures (docs/performance.md).
BLANK_STD = 4.0


def blank_frames(frames: np.ndarray) -> list[int]:
    """Indices of near-uniform frames. SSCD scores two black frames of unrelated videos 1.0, so
    such frames must not count as evidence of a copy."""
    if len(frames) == 0:
        return []
    n = len(frames)
    rgb = np.asarray(frames, np.uint8).reshape(n, -1, 3)
    # std of the grey level (R + G + B) / 3 from exact integer sums of s = R + G + B and s^2: the
    # same figure as a float64 mean/std over the pixels, 4x cheaper (it was a fifth of the CPU
    # features' cost). int32 holds s^2 <= 765^2; the sums over a frame go to int64.
    s = rgb[:, :, 0].astype(np.int32)
    s += rgb[:, :, 1]
    s += rgb[:, :, 2]
    m1 = s.sum(axis=1, dtype=np.int64).astype(np.float64)
    m2 = np.einsum("ij,ij->i", s, s, dtype=np.int64).astype(np.float64)
    px = float(s.shape[1])
    std = np.sqrt(np.maximum(m2 / px - (m1 / px) ** 2, 0.0)) / 3.0
    return [int(i) for i in np.flatnonzero(std < BLANK_STD)]


def cpu_features(dec: Decoded, cfg: Config, audio_step: float | None = None) -> VideoFeatures:
    aud = audio_features(dec.audio, dec.sample_rate, cfg.audio, step=audio_step)
    meta = dict(dec.meta)
    meta["blank_frames"] = blank_frames(dec.frames)
    pdq, pdq_quality = pdq_frames(dec.frames)
    return VideoFeatures(
        video_id=dec.ref.video_id, uri=dec.ref.uri,
        timestamps=np.asarray(dec.timestamps, np.float32),
        embeddings=np.zeros((0, 0), np.float32),
        phash=phash_frames(dec.frames),
        audio_windows=aud["windows"], audio_vectors=aud["vectors"],
        chromaprint=aud["chromaprint"], chromaprint_hz=float(aud["chromaprint_hz"]),
        meta=meta, pdq=pdq, pdq_quality=pdq_quality,
    )


def add_embeddings(f: VideoFeatures, frames: np.ndarray, embedder) -> VideoFeatures:
    return dataclasses.replace(f, embeddings=embedder.embed(frames).astype(np.float32))


def mirrored_embeddings(frames: np.ndarray, embedder) -> np.ndarray:
    """Embeddings of the horizontally mirrored frames: a query-side trick that finds flipped copies
    without doubling the index."""
    return embedder.embed(np.ascontiguousarray(frames[:, :, ::-1, :])).astype(np.float32)


def streamed_features(path: str, ref: VideoRef, cfg: Config, embedder, meta: dict[str, Any] | None = None,
                      audio_step: float | None = None, chunk: int | None = None) -> VideoFeatures:
    """Every feature of a file of any length, embeddings included, with bounded memory.

    Why here and not in the embedder pool: the pipeline's usual path sends a video's frames in
    one record to the embedder actors, which for a three-hour file is 10800 frames = 1.6 GB held
    by the decode task, copied by pickle, stored in the object store and unpickled by the actor.
    Instead, each chunk of frames from :func:`decode_streamed` is reduced at once to its pHash,
    blank flags and embeddings (``embedder`` is the process' cached model, see get_embedder) and
    dropped, and the PCM goes chunk by chunk into :class:`StreamingAudioFeatures`; what stays is
    the features, ~2.5 KB per second of video (the 512-d embedding dominates). The alternative,
    splitting a long video into chunk rows that the embedder pool handles and the driver stitches
    back, keeps GPUs busy with long videos too, but needs a generator decode stage, per-video
    reassembly across write batches and partial-failure rules; long files are the exception in
    a corpus, so they pay the CPU embedding in the decode task instead.

    The result equals ``add_embeddings(cpu_features(decode_video(...)), ...)`` within float noise
    (tests/io/test_bad_media.py checks it on a clip streamed in small chunks).
    """
    from astradup.io.decode import decode_streamed
    from astradup.io.sampling import STREAM_CHUNK

    ts: list[np.ndarray] = []
    ph: list[np.ndarray] = []
    pq: list[np.ndarray] = []
    pq_quality: list[np.ndarray] = []
    emb: list[np.ndarray] = []
    blank: list[int] = []
    seen = [0]

    def on_frames(times: np.ndarray, frames: np.ndarray) -> None:
        ts.append(np.asarray(times, np.float32))
        ph.append(phash_frames(frames))
        h, q = pdq_frames(frames)
        pq.append(h)
        pq_quality.append(q)
        blank.extend(seen[0] + i for i in blank_frames(frames))
        emb.append(np.asarray(embedder.embed(frames), np.float32))
        seen[0] += len(frames)

    audio = StreamingAudioFeatures(cfg.decode.sample_rate, cfg.audio, step=audio_step)
    meta = decode_streamed(path, cfg.decode, on_frames, audio.feed, meta=meta,
                           chunk=int(chunk or STREAM_CHUNK))
    aud = audio.finish() if meta.get("has_audio") and "audio_error" not in meta else \
        audio_features(None, cfg.decode.sample_rate, cfg.audio)
    meta["blank_frames"] = blank
    return VideoFeatures(
        video_id=ref.video_id, uri=ref.uri,
        timestamps=np.concatenate(ts), embeddings=np.concatenate(emb),
        phash=np.concatenate(ph),
        audio_windows=aud["windows"], audio_vectors=aud["vectors"],
        chromaprint=aud["chromaprint"], chromaprint_hz=float(aud["chromaprint_hz"]),
        meta=meta, pdq=np.concatenate(pq), pdq_quality=np.concatenate(pq_quality),
    )
