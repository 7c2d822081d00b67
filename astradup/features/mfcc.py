"""MFCC window statistics of a track: the timbre half of an audio window vector.

Windows lie on a fixed grid from the track's start (window_grid), so index and query agree on
where windows fall; each gets the mean and std of the MFCC frames centred in it.
"""
from __future__ import annotations

import numpy as np

MEL_BANDS = 40  # mel bands the MFCC is the DCT of: there are no more than MEL_BANDS coefficients


def fft_size(sr: int) -> int:
    """MFCC frame length in samples: ~186 ms, a power of two (2048 at 11025 Hz, which the
    standardisation constants in features/audio.py were measured with); hops are a quarter."""
    return 1 << int(round(np.log2(0.186 * sr)))


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


def mfcc_frames(pcm: np.ndarray, sr: int, n_mfcc: int) -> tuple[np.ndarray, np.ndarray]:
    """MFCC frames [F, n_mfcc] and their centre times [F]."""
    return mfcc_of_power(power_frames(pcm, fft_size(sr)), sr, n_mfcc)


def power_frames(pcm: np.ndarray, n_fft: int) -> np.ndarray:
    """Power spectrogram [1 + n_fft / 2, F] of the MFCC's frames (hop n_fft / 4, centred).

    Apart from ``mfcc_of_power`` because only the mel filters depend on the sample rate: reading a
    track at another rate (features/pitch_variants.py) keeps these frames, so its 16 readings share
    one STFT (each reading's MFCC then costs a tenth of a whole one)."""
    import librosa

    y = np.ascontiguousarray(pcm, np.float32)
    if len(y) < n_fft:  # a clip shorter than one FFT frame: pad with silence rather than warn
        y = np.pad(y, (0, n_fft - len(y)))
    return np.abs(librosa.stft(y, n_fft=n_fft, hop_length=n_fft // 4)) ** 2


def mfcc_of_power(power: np.ndarray, sr: int, n_mfcc: int) -> tuple[np.ndarray, np.ndarray]:
    """MFCC frames [F, n_mfcc] and centre times [F] of ``power_frames``' output read at ``sr``."""
    import librosa

    n_fft = 2 * (power.shape[0] - 1)
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_fft=n_fft, n_mels=MEL_BANDS)
    m = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=n_mfcc)
    t = librosa.frames_to_time(np.arange(m.shape[1]), sr=sr, hop_length=n_fft // 4)
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
    m, t = mfcc_frames(pcm, sr, n_mfcc)
    return windows, window_stats(m, t, windows)


def window_stats(mfcc: np.ndarray, times: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """float32 [W, 2 * n]: per window, the mean then the std of the MFCC frames centred in it."""
    cnt, s1, s2 = _window_sums(mfcc, times, windows.astype(np.float64))
    cnt = np.maximum(cnt, 1.0)[:, None]
    mean = s1 / cnt
    std = np.sqrt(np.maximum(s2 / cnt - mean * mean, 0.0))
    return np.concatenate([mean, std], axis=1).astype(np.float32)
