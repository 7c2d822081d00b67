"""Compact on-disk forms of the per-video vectors, and their exact way back.

The shards are the durable copy of every feature, so their size is most of the fingerprint's
size. Two forms, both measured on the dev benchmark with the real scoring and alignment code
(benchmarks/fingerprint_size.py; docs/performance.md):

- Frame embeddings as int8, each row scaled so its largest component is +-127 (no scale is
  stored: rows are L2-normalised again when read, and inner products only need directions).
  512 float32 -> 512 bytes a frame, 4x smaller; recall@1, fused micro-AP, LCT and segment
  micro-AP unchanged to 0.001 on dev20.
- Audio window vectors rebuilt from what they are made of: the Chromaprint codes (stored anyway)
  give the 192 code-histogram dimensions exactly, so only the MFCC part is kept, as float16
  (26 x 2 bytes a window instead of 218 x 4). Scores bit-for-bit the same on dev20.
"""
from __future__ import annotations

import numpy as np

from astradup.features.audio import CODE_DIM, MFCC_WEIGHT, N_BLOCKS, code_blocks
from astradup.features.unit_rows import l2_normalise

CODES_DIM = N_BLOCKS * CODE_DIM  # leading dimensions of an audio window vector


def quantise_rows(x: np.ndarray) -> np.ndarray:
    """float [N, D] -> int8 [N, D], each row scaled to use the full +-127 range."""
    return quantise_rows_scaled(x)[0]


def quantise_rows_scaled(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float [N, D] -> (int8 [N, D], float32 [N] step): row i is ``q[i] * step[i]`` to within half
    a step per component, ``step[i] = max|x[i]| / 127`` (0 for a zero row). The shards drop the
    step (rows are re-normalised when read); a fingerprint file keeps it so a reader needs no
    convention to get the values back."""
    x = np.asarray(x, np.float32)
    if x.size == 0:
        return np.zeros(x.shape, np.int8), np.zeros((len(x),), np.float32)
    m = np.abs(x).max(axis=1, keepdims=True)
    scale = np.divide(127.0, m, out=np.zeros_like(m), where=m > 0)
    return np.rint(x * scale).astype(np.int8), (m[:, 0] / 127.0).astype(np.float32)


def dequantise_rows(q: np.ndarray) -> np.ndarray:
    """int8 [N, D] -> float32 [N, D] unit rows (zero rows stay zero)."""
    return l2_normalise(np.asarray(q, np.float32)).astype(np.float32)


def audio_mfcc_part(vectors: np.ndarray) -> np.ndarray:
    """The MFCC direction of audio window vectors (what Chromaprint cannot give back), float16."""
    v = np.asarray(vectors, np.float32)
    if v.ndim != 2 or v.shape[1] < CODES_DIM:
        raise ValueError(f"audio vectors must be [W, >= {CODES_DIM}], got {v.shape}")
    return l2_normalise(v[:, CODES_DIM:]).astype(np.float16)


def rebuild_audio_vectors(chroma: np.ndarray, hz: float, windows: np.ndarray,
                          mfcc_part: np.ndarray) -> np.ndarray:
    """Window vectors as ``features.audio.window_vectors`` built them, from codes + MFCC direction."""
    windows = np.asarray(windows, np.float64).reshape(-1, 2)
    mf = np.asarray(mfcc_part, np.float64).reshape(len(windows), -1)
    if len(windows) == 0:
        return np.zeros((0, CODES_DIM + mf.shape[1]), np.float32)
    codes = l2_normalise(code_blocks(np.asarray(chroma, np.uint32), hz, windows))
    return l2_normalise(np.concatenate([codes, MFCC_WEIGHT * l2_normalise(mf)], axis=1)).astype(np.float32)
