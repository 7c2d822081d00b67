"""Decoded video -> VideoFeatures, split in the two halves the pipeline runs on different pools.

``cpu_features`` (pHash, audio, metadata) runs where decoding runs, so PCM never travels;
``add_embeddings`` runs in the embedder pool (GPU where present), so frames travel once.
The CLI search path calls the same two functions, so a query gets exactly the features an
indexed video gets.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from astradup.config import Config
from astradup.features.audio import audio_features
from astradup.features.phash import phash_frames
from astradup.records import Decoded, VideoFeatures


BLANK_STD = 6.0  # grey-level std below which a frame is a fade/black/flat card


def blank_frames(frames: np.ndarray) -> list[int]:
    """Indices of near-uniform frames. SSCD scores two black frames of unrelated videos 1.0, so
    such frames must not count as evidence of a copy."""
    if len(frames) == 0:
        return []
    grey = frames.reshape(len(frames), -1, 3).mean(axis=2)
    return [int(i) for i in np.flatnonzero(grey.std(axis=1) < BLANK_STD)]


def cpu_features(dec: Decoded, cfg: Config, audio_step: float | None = None) -> VideoFeatures:
    aud = audio_features(dec.audio, dec.sample_rate, cfg.audio, step=audio_step)
    meta = dict(dec.meta)
    meta["blank_frames"] = blank_frames(dec.frames)
    return VideoFeatures(
        video_id=dec.ref.video_id, uri=dec.ref.uri,
        timestamps=np.asarray(dec.timestamps, np.float32),
        embeddings=np.zeros((0, 0), np.float32),
        phash=phash_frames(dec.frames),
        audio_windows=aud["windows"], audio_vectors=aud["vectors"],
        chromaprint=aud["chromaprint"], chromaprint_hz=float(aud["chromaprint_hz"]),
        meta=meta,
    )


def add_embeddings(f: VideoFeatures, frames: np.ndarray, embedder) -> VideoFeatures:
    return dataclasses.replace(f, embeddings=embedder.embed(frames).astype(np.float32))


def mirrored_embeddings(frames: np.ndarray, embedder) -> np.ndarray:
    """Embeddings of the horizontally mirrored frames: a query-side trick that finds flipped copies
    without doubling the index."""
    return embedder.embed(np.ascontiguousarray(frames[:, :, ::-1, :])).astype(np.float32)
