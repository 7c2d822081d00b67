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


def cpu_features(dec: Decoded, cfg: Config, audio_step: float | None = None) -> VideoFeatures:
    aud = audio_features(dec.audio, dec.sample_rate, cfg.audio, step=audio_step)
    return VideoFeatures(
        video_id=dec.ref.video_id, uri=dec.ref.uri,
        timestamps=np.asarray(dec.timestamps, np.float32),
        embeddings=np.zeros((0, 0), np.float32),
        phash=phash_frames(dec.frames),
        audio_windows=aud["windows"], audio_vectors=aud["vectors"],
        chromaprint=aud["chromaprint"], chromaprint_hz=float(aud["chromaprint_hz"]),
        meta=dict(dec.meta),
    )


def add_embeddings(f: VideoFeatures, frames: np.ndarray, embedder) -> VideoFeatures:
    return dataclasses.replace(f, embeddings=embedder.embed(frames).astype(np.float32))


def mirrored_embeddings(frames: np.ndarray, embedder) -> np.ndarray:
    """Embeddings of the horizontally mirrored frames: a query-side trick that finds flipped copies
    without doubling the index."""
    return embedder.embed(np.ascontiguousarray(frames[:, :, ::-1, :])).astype(np.float32)
