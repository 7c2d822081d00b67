"""A track's audio fingerprint: Chromaprint of the whole track plus per-window vectors for KNN.

Two granularities because they answer different questions. Chromaprint over the whole track
(features/chromaprint.py) says "these two tracks are the same recording"; window vectors let the
index find *which* source, and where, from a short query window, with a plain inner-product KNN.
This module defines the window vector (Chromaprint codes + MFCC timbre, features/mfcc.py) and
assembles a track's features; features/audio_stream.py computes the same from PCM chunks.
"""
from __future__ import annotations

import numpy as np

from astradup.config import AudioConfig
from astradup.features.chromaprint import chromaprint_ints, item_times
from astradup.features.mfcc import MEL_BANDS, mfcc_windows
from astradup.features.unit_rows import l2_normalise

SILENCE_RMS = 10 ** (-60 / 20)  # below -60 dBFS a window is treated as silent and not indexed

# Window vector = [Chromaprint code histograms over 3 soft sub-blocks (192)] + MFCC_WEIGHT *
# [standardised MFCC mean/std (2 * n_mfcc)], L2-normalised. Sub-blocks keep a little temporal order,
# which pushes unrelated windows down; soft (triangular, overlapping) blocks keep that order
# tolerant of a half-step grid offset; MFCC adds timbre at a small weight (more helps tempo- or
# pitch-shifted copies but hurts noisy ones). The measurements behind the design: docs/scaling.md,
# "Decoding and audio design measurements".
N_BLOCKS = 3
MFCC_WEIGHT = 0.25
CODE_DIM = 16 * 4  # 16 Chromaprint classifiers, each a 2-bit (4-level) code
# Standardisation of the 13-coefficient MFCC window stats (mean then std), measured on the clips
# behind the design table (docs/scaling.md) with features/mfcc.py's settings at 11025 Hz;
# coefficients past 13 reuse the last value.
_MFCC_MU = np.array([-74.9, 59.5, -1.2, 16.5, -6.7, 4.1, -6.7, 0.4, -5.2, -1.4, -3.0, -2.0, -2.6])
_MFCC_SD = np.array([46.9, 12.6, 10.8, 5.2, 10.8, 4.5, 8.3, 4.4, 6.8, 5.8, 4.8, 5.6, 4.2])
_MFCC_STD_MU = np.array([28.2, 12.9, 9.8, 8.1, 7.1, 5.5, 5.9, 5.1, 5.1, 4.9, 5.0, 4.7, 4.4])
_MFCC_STD_SD = np.array([24.9, 8.6, 7.5, 6.7, 5.4, 3.0, 3.7, 2.6, 2.6, 2.5, 2.6, 2.1, 2.4])


def vector_dim(n_mfcc: int) -> int:
    """Length of a window vector, so a store can create its collection before any audio arrives
    (a DCT of MEL_BANDS bands has MEL_BANDS coefficients, so a larger ``n_mfcc`` gives no more)."""
    return N_BLOCKS * CODE_DIM + 2 * min(n_mfcc, MEL_BANDS)


def _codes_onehot(chroma: np.ndarray) -> np.ndarray:
    """uint32 [K] -> float64 [K, 64]: one-hot of each classifier's 2-bit code (bits 2i, 2i+1)."""
    a = np.asarray(chroma, np.uint32)
    codes = (a[:, None] >> (2 * np.arange(16, dtype=np.uint32))) & 3  # [K, 16] in 0..3
    onehot = np.zeros((len(a), CODE_DIM), np.float64)
    np.put_along_axis(onehot, (4 * np.arange(16) + codes).astype(np.intp), 1.0, axis=1)
    return onehot


def _pad(stat: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate([stat, np.full(max(0, n - len(stat)), stat[-1])])[:n]


def _standardise_mfcc(stats: np.ndarray) -> np.ndarray:
    n = stats.shape[1] // 2
    mu = np.concatenate([_pad(_MFCC_MU, n), _pad(_MFCC_STD_MU, n)])
    sd = np.concatenate([_pad(_MFCC_SD, n), _pad(_MFCC_STD_SD, n)])
    return (stats.astype(np.float64) - mu) / sd


def code_blocks(chroma: np.ndarray, hz: float, windows: np.ndarray, time_scale: float = 1.0) -> np.ndarray:
    """[W, N_BLOCKS * 64] centred code histograms over soft sub-blocks of each window.

    Block k of window [s, e) weighs the items in the window by a triangle centred at
    s + (k + 0.5) * (e - s) / N with half-width (e - s) / N, so neighbouring blocks overlap and a
    small shift of the window moves weight gradually instead of items jumping between blocks.
    ``time_scale`` maps the items' times onto the windows' axis (features/pitch_variants.py reads a
    track at another rate, so its items' times are the track's times divided by that rate's ratio).

    The blocks' weights form one sparse [W * N_BLOCKS, items] matrix times the items' one-hot codes:
    no [windows, items, 64] gather (windows overlap ~90%, so that copied each item's codes ~10
    times). Every stored window vector is rebuilt from its codes on each shard read
    (store/compact.py), where the gather was most of a candidate fetch.
    """
    windows = np.asarray(windows, np.float64).reshape(-1, 2)
    w_n = len(windows)
    out = np.zeros((w_n, N_BLOCKS * CODE_DIM), np.float64)
    if w_n == 0 or len(chroma) == 0:
        return out
    t = item_times(len(chroma), hz) * time_scale
    x = _codes_onehot(chroma)
    for c0 in range(0, w_n, 256):  # chunks bound the [chunk x N_BLOCKS, span] weights
        sl = slice(c0, min(w_n, c0 + 256))
        out[sl] = _block_histograms(t, x, windows[sl])
    return out


def _block_histograms(t: np.ndarray, x: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """``code_blocks`` of some windows: items at times ``t`` with one-hot codes ``x``."""
    from scipy.sparse import csr_matrix  # imported on first use: 0.2-0.35 s, and only readers of audio need it

    w_n = len(windows)
    lo = np.searchsorted(t, windows[:, 0], side="left")
    hi = np.searchsorted(t, windows[:, 1], side="left")
    span = int(max(1, (hi - lo).max()))
    idx = lo[:, None] + np.arange(span)[None, :]  # [W, span]: each window's items, padded
    valid = idx < hi[:, None]
    idx = np.minimum(idx, len(t) - 1)
    ti = t[idx]
    s, e = windows[:, 0:1], windows[:, 1:2]
    width = np.maximum(e - s, 1e-6) / N_BLOCKS
    # rows k * W + w: block k of window w (a padded item weighs 0)
    weights = np.concatenate([np.clip(1.0 - np.abs(ti - (s + (k + 0.5) * width)) / width, 0.0, None) * valid
                              for k in range(N_BLOCKS)])
    keep = weights > 0  # a third of each window's items lie outside a block's triangle
    m = csr_matrix((weights[keep], np.tile(idx, (N_BLOCKS, 1))[keep],
                    np.concatenate([[0], np.cumsum(keep.sum(axis=1))])), shape=(len(weights), len(t)))
    hist = np.asarray(m @ x)  # [N_BLOCKS * W, 64]
    tot = weights.sum(axis=1, keepdims=True)
    # Centre on the uniform code distribution; a block with no item contributes nothing.
    blocks = np.where(tot > 0, hist / np.where(tot > 0, tot, 1.0) - 0.25, 0.0)
    return blocks.reshape(N_BLOCKS, w_n, CODE_DIM).transpose(1, 0, 2).reshape(w_n, N_BLOCKS * CODE_DIM)


def window_vectors(chroma: np.ndarray, hz: float, windows: np.ndarray,
                   mfcc_stats: np.ndarray, time_scale: float = 1.0) -> np.ndarray:
    """float32 [W, 192 + 2 * n_mfcc] L2-normalised vectors for inner-product KNN of audio windows.

    The same function must build index and query vectors; ``time_scale`` as in ``code_blocks``.
    """
    windows = np.asarray(windows, np.float64).reshape(-1, 2)
    mfcc_stats = np.asarray(mfcc_stats, np.float64)
    if mfcc_stats.ndim != 2 or len(mfcc_stats) != len(windows):
        raise ValueError(f"mfcc_stats must be [W, 2 * n_mfcc] for W={len(windows)} windows, "
                         f"got {mfcc_stats.shape}")
    codes = l2_normalise(code_blocks(np.asarray(chroma, np.uint32), hz, windows, time_scale))
    mf = MFCC_WEIGHT * l2_normalise(_standardise_mfcc(mfcc_stats)) if mfcc_stats.shape[1] else \
        np.zeros((len(windows), 0))
    return l2_normalise(np.concatenate([codes, mf], axis=1)).astype(np.float32)


# --- Everything for one track ----------------------------------------------------------------

def _window_rms(pcm: np.ndarray, sr: int, windows: np.ndarray) -> np.ndarray:
    c = np.concatenate([[0.0], np.cumsum(pcm.astype(np.float64) ** 2)])
    lo = np.clip(np.rint(windows[:, 0] * sr).astype(np.int64), 0, len(pcm))
    hi = np.clip(np.rint(windows[:, 1] * sr).astype(np.int64), 0, len(pcm))
    return np.sqrt((c[hi] - c[lo]) / np.maximum(hi - lo, 1))


def empty_audio_features(n_mfcc: int = 13) -> dict[str, np.ndarray | float]:
    """audio_features' dict for a track with nothing to index (none, empty or silent)."""
    return {
        "windows": np.zeros((0, 2), np.float32),
        "vectors": np.zeros((0, vector_dim(n_mfcc)), np.float32),
        "chromaprint": np.zeros((0,), np.uint32),
        "chromaprint_hz": 0.0,
    }


def audio_features(pcm: np.ndarray | None, sr: int, cfg: AudioConfig,
                   step: float | None = None) -> dict[str, np.ndarray | float]:
    """Chromaprint of the whole track and window vectors every ``step`` s (default cfg.step).

    Silent windows (below -60 dBFS) are left out, and a silent track gets no fingerprint at all:
    silence fingerprints identically everywhere and would "match" every other silent video.
    """
    step = float(cfg.step if step is None else step)
    if pcm is None or len(pcm) == 0:
        return empty_audio_features(cfg.n_mfcc)
    pcm = np.nan_to_num(np.asarray(pcm, np.float32).reshape(-1))
    if float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) < SILENCE_RMS:
        return empty_audio_features(cfg.n_mfcc)
    chroma, hz = chromaprint_ints(pcm, sr)
    windows, stats = mfcc_windows(pcm, sr, cfg.window, step, cfg.n_mfcc)
    return loud_features(chroma, hz, windows, stats, _window_rms(pcm, sr, windows.astype(np.float64)))


def loud_features(chroma: np.ndarray, hz: float, windows: np.ndarray, stats: np.ndarray,
                  rms: np.ndarray) -> dict[str, np.ndarray | float]:
    """audio_features' dict from a track's Chromaprint and its windows' MFCC stats and RMS: silent
    windows (below -60 dBFS) left out, the rest turned into window vectors."""
    loud = rms >= SILENCE_RMS
    windows, stats = windows[loud], stats[loud]
    return {
        "windows": windows.astype(np.float32),
        "vectors": window_vectors(chroma, hz, windows, stats),
        "chromaprint": chroma,
        "chromaprint_hz": float(hz) if len(chroma) else 0.0,
    }
