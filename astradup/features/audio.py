"""Audio fingerprints: Chromaprint for the whole track, and per-window vectors for KNN.

Two granularities because they answer different questions. Chromaprint over the whole track,
compared bit by bit at the best offset, says "these two tracks are the same recording" very
reliably (re-encodes, volume and mild noise barely move it). Window vectors let the index find
*which* source, and where, from a short query window, with a plain inner-product KNN.
"""
from __future__ import annotations

import numpy as np

from astradup.config import AudioConfig

# Chromaprint's default algorithm (TEST2) resamples to 11025 Hz and hops 4096 - 4096 * 2 // 3 =
# 1365 samples between spectral frames; each sub-fingerprint ("item") then spans 16 frames of a
# chroma smoothed over 5 frames. Checked against measurement in tests/test_audio.py.
CP_SAMPLE_RATE = 11025
CP_FRAME = 4096
CP_HOP = 1365
CP_ITEM_FRAMES = 16 + 5 - 1  # frames one item depends on
CHROMAPRINT_HZ = CP_SAMPLE_RATE / CP_HOP  # ~8.077 items per second
# Time of the middle of an item's receptive field, relative to the item's start: used to say which
# window an item belongs to.
CP_ITEM_CENTRE_S = ((CP_ITEM_FRAMES - 1) * CP_HOP + CP_FRAME) / 2 / CP_SAMPLE_RATE

SILENCE_RMS = 10 ** (-60 / 20)  # below -60 dBFS a window is treated as silent and not indexed


# --- Chromaprint -----------------------------------------------------------------------------

def _to_int16(pcm: np.ndarray) -> bytes:
    x = np.clip(np.nan_to_num(np.asarray(pcm, np.float32)), -1.0, 1.0)
    return (x * 32767.0).astype("<i2").tobytes()


def chromaprint_ints(pcm: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    """Raw Chromaprint sub-fingerprints (uint32 [K]) of mono PCM, and their rate in items/s.

    Computed in-process through libchromaprint (pyacoustid's ctypes wrapper), not fpcalc, so no
    audio is written to disk and no second decode happens. Too-short audio gives K = 0.
    """
    import chromaprint  # the wrapper loads libchromaprint at import: keep it out of import time

    pcm = np.asarray(pcm, np.float32).reshape(-1)
    if len(pcm) == 0:
        return np.zeros((0,), np.uint32), CHROMAPRINT_HZ
    fp = chromaprint.Fingerprinter()
    fp.start(int(sr), 1)
    fp.feed(_to_int16(pcm))
    encoded = fp.finish()
    if not encoded:
        return np.zeros((0,), np.uint32), CHROMAPRINT_HZ
    ints, _algorithm = chromaprint.decode_fingerprint(encoded)
    return np.asarray(ints, np.int64).astype(np.uint32), CHROMAPRINT_HZ


def _bit_planes(a: np.ndarray) -> np.ndarray:
    """uint32 [K] -> float32 [K, 32] of 0/1, least significant bit first."""
    a = np.asarray(a, np.uint32)
    b = np.unpackbits(a.astype("<u4").view(np.uint8).reshape(-1, 4), axis=1, bitorder="little")
    return b.astype(np.float32)


def chromaprint_similarity(a: np.ndarray, b: np.ndarray, max_offset: int | None = None) -> float:
    """Best fraction of equal bits over relative offsets (same recording ~1.0, unrelated ~0.5).

    Every offset is scored at once with an FFT cross-correlation of the +-1 bit planes (the sum of
    products at an offset is #equal - #different), so the cost is O((K1 + K2) log) instead of
    O(K1 * K2). Only offsets whose overlap is at least half the shorter print count, so two
    prints cannot agree "perfectly" on a handful of items at their ends.
    """
    a, b = np.asarray(a, np.uint32), np.asarray(b, np.uint32)
    k1, k2 = len(a), len(b)
    if k1 == 0 or k2 == 0:
        return 0.0
    pa, pb = 2.0 * _bit_planes(a) - 1.0, 2.0 * _bit_planes(b) - 1.0
    n = k1 + k2 - 1
    nfft = 1 << (n - 1).bit_length()
    fa = np.fft.rfft(pa.astype(np.float64), nfft, axis=0)
    fb = np.fft.rfft(pb.astype(np.float64), nfft, axis=0)
    # corr[s] = sum_i a[i] * b[i + s] (s = offset of b against a), summed over the 32 bit planes.
    corr = np.fft.irfft((np.conj(fa) * fb).sum(axis=1), nfft)
    offsets = np.arange(-(k1 - 1), k2)
    vals = np.concatenate([corr[nfft - (k1 - 1):], corr[:k2]]) if k1 > 1 else corr[:k2]
    overlap = np.minimum(k1, k2 - offsets) - np.maximum(0, -offsets)
    ok = overlap >= max(1, min(k1, k2) // 2)
    if max_offset is not None:
        ok &= np.abs(offsets) <= max_offset
    if not ok.any():
        return 0.0
    frac = 0.5 * (1.0 + np.rint(vals[ok]) / (32.0 * overlap[ok]))
    return float(np.clip(frac.max(), 0.0, 1.0))


# --- MFCC windows ----------------------------------------------------------------------------

def window_grid(duration: float, window: float, step: float) -> np.ndarray:
    """float32 [W, 2] window (start, end) seconds on a fixed grid from 0; a clip shorter than one
    window gets a single window covering it."""
    if duration <= 0:
        return np.zeros((0, 2), np.float32)
    if duration < window:
        return np.array([[0.0, duration]], np.float32)
    n = int(np.floor((duration - window) / step + 1e-6)) + 1
    starts = np.arange(n, dtype=np.float64) * step
    return np.stack([starts, starts + window], axis=1).astype(np.float32)


def _mfcc(pcm: np.ndarray, sr: int, n_mfcc: int) -> tuple[np.ndarray, np.ndarray]:
    """MFCC frames [F, n_mfcc] and their centre times [F]."""
    import librosa

    n_fft = 1 << int(np.ceil(np.log2(0.093 * sr)))  # ~93 ms, as 2048 at 22.05 kHz
    hop = n_fft // 4
    m = librosa.feature.mfcc(y=np.ascontiguousarray(pcm, np.float32), sr=sr, n_mfcc=n_mfcc,
                             n_fft=n_fft, hop_length=hop, n_mels=40)
    t = librosa.frames_to_time(np.arange(m.shape[1]), sr=sr, hop_length=hop)
    return m.T.astype(np.float64), t


def _window_sums(values: np.ndarray, times: np.ndarray, windows: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per window: count, sum and sum of squares of the rows of ``values`` whose time falls in
    [start, end), via cumulative sums (O(F + W) whatever the window overlap)."""
    lo = np.searchsorted(times, windows[:, 0], side="left")
    hi = np.searchsorted(times, windows[:, 1], side="left")
    # A window too short to contain any frame centre takes the nearest one.
    empty = hi <= lo
    lo[empty] = np.clip(lo[empty], 0, max(len(times) - 1, 0))
    hi[empty] = np.minimum(lo[empty] + 1, len(times))
    zero = np.zeros((1, values.shape[1]))
    c1 = np.concatenate([zero, np.cumsum(values, axis=0)])
    c2 = np.concatenate([zero, np.cumsum(values * values, axis=0)])
    cnt = (hi - lo).astype(np.float64)
    return cnt, c1[hi] - c1[lo], c2[hi] - c2[lo]


def mfcc_windows(pcm: np.ndarray, sr: int, window: float, step: float, n_mfcc: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Windows float32 [W, 2] and per-window MFCC mean and std, float32 [W, 2 * n_mfcc]."""
    pcm = np.asarray(pcm, np.float32).reshape(-1)
    windows = window_grid(len(pcm) / float(sr), window, step)
    if len(windows) == 0:
        return windows, np.zeros((0, 2 * n_mfcc), np.float32)
    m, t = _mfcc(pcm, sr, n_mfcc)
    cnt, s1, s2 = _window_sums(m, t, windows.astype(np.float64))
    cnt = np.maximum(cnt, 1.0)[:, None]
    mean = s1 / cnt
    std = np.sqrt(np.maximum(s2 / cnt - mean * mean, 0.0))
    return windows, np.concatenate([mean, std], axis=1).astype(np.float32)
