"""Chromaprint of a track: its sub-fingerprints, their timing, and how alike two prints are.

Chromaprint over the whole track, compared bit by bit at the best offset, says "these two tracks
are the same recording" very reliably (re-encodes, volume and mild noise barely move it). The
prints also feed the per-window vectors (features/audio.py), which say *which* source, and where.
"""
from __future__ import annotations

import numpy as np

from astradup.records import CodeReading

# Chromaprint's default algorithm (TEST2) resamples to 11025 Hz and hops 4096 / 3 = 1365 samples
# between 4096-sample spectral frames; each sub-fingerprint ("item") spans 16 frames of a chroma
# smoothed over 5 frames, so N samples give (N - 4096) // 1365 + 1 - 19 items. Measured: 4825
# items for 600 s and 9671 for 1200 s at 11025 Hz, exactly that formula (a hop of 1366 would give
# 4821 / 9664); tests/features/test_audio.py checks it.
CP_SAMPLE_RATE = 11025
CP_FRAME = 4096
CP_HOP = 1365
CP_ITEM_FRAMES = 16 + 5 - 1  # frames one item depends on
CHROMAPRINT_HZ = CP_SAMPLE_RATE / CP_HOP  # ~8.077 items per second
# Time of the middle of an item's receptive field, relative to the item's start: used to say which
# window an item belongs to.
CP_ITEM_CENTRE_S = ((CP_ITEM_FRAMES - 1) * CP_HOP + CP_FRAME) / 2 / CP_SAMPLE_RATE


def pcm_int16(pcm: np.ndarray) -> bytes:
    """Float PCM as the 16-bit little-endian samples libchromaprint is fed (NaN as silence)."""
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
    fp.feed(pcm_int16(pcm))
    return fingerprint_ints(fp.finish()), CHROMAPRINT_HZ


def fingerprint_ints(encoded: bytes) -> np.ndarray:
    """uint32 [K] sub-fingerprints of a finished Fingerprinter's encoded print (K = 0 for none)."""
    if not encoded:
        return np.zeros((0,), np.uint32)
    import chromaprint

    ints, _algorithm = chromaprint.decode_fingerprint(encoded)
    return np.asarray(ints, np.int64).astype(np.uint32)


def bit_planes(a: np.ndarray) -> np.ndarray:
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
    pa, pb = 2.0 * bit_planes(a) - 1.0, 2.0 * bit_planes(b) - 1.0
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


def item_times(k: int, hz: float = CHROMAPRINT_HZ) -> np.ndarray:
    """Time (s) each Chromaprint item stands for: the middle of the audio it was computed from."""
    return np.arange(k, dtype=np.float64) / hz + CP_ITEM_CENTRE_S


def code_reading(codes: np.ndarray, hz: float, scale: float = 1.0, shifted: bool = False) -> CodeReading:
    """A track's codes as a reading (match/audio_confirm.py): items at ``item_times``, times ``scale``
    when the track was read at another rate (features/pitch_variants.py), so every time is on the
    track's own axis."""
    codes = np.asarray(codes, np.uint32).reshape(-1)
    return CodeReading(codes, item_times(len(codes), hz) * scale, shifted)
