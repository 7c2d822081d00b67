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
