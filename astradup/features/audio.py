"""Audio fingerprints: Chromaprint for the whole track, and per-window vectors for KNN.

Two granularities because they answer different questions. Chromaprint over the whole track,
compared bit by bit at the best offset, says "these two tracks are the same recording" very
reliably (re-encodes, volume and mild noise barely move it). Window vectors let the index find
*which* source, and where, from a short query window, with a plain inner-product KNN.
"""
from __future__ import annotations

import numpy as np

from astradup.config import AudioConfig
from astradup.features.unit_rows import l2_normalise

# Chromaprint's default algorithm (TEST2) resamples to 11025 Hz and hops 4096 / 3 = 1365 samples
# between 4096-sample spectral frames; each sub-fingerprint ("item") spans 16 frames of a chroma
# smoothed over 5 frames, so N samples give (N - 4096) // 1365 + 1 - 19 items. Measured: 4825
# items for 600 s and 9671 for 1200 s at 11025 Hz, exactly that formula (a hop of 1366 would give
# 4821 / 9664); tests/test_audio.py checks it.
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

    n_fft = 1 << int(round(np.log2(0.186 * sr)))  # ~186 ms: 2048 at 11025 Hz (the constants below)
    hop = n_fft // 4
    y = np.ascontiguousarray(pcm, np.float32)
    if len(y) < n_fft:  # a clip shorter than one FFT frame: pad with silence rather than warn
        y = np.pad(y, (0, n_fft - len(y)))
    m = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=n_mfcc, n_fft=n_fft, hop_length=hop, n_mels=40)
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


# --- Window vectors --------------------------------------------------------------------------

# Window vector = [Chromaprint code histograms over 3 soft sub-blocks (192)] + MFCC_WEIGHT *
# [standardised MFCC mean/std (2 * n_mfcc)], L2-normalised. Measured on 14 one-minute clips of real
# music and speech (Debian wesnoth/frozen-bubble music, asterisk speech), query grid offset by half
# a step, inner product with the best-overlapping source window, mean / 5th percentile:
#   design                     clean      -6dB/+noise  mp3 64k    aac 48k    unrelated p99.9
#   32 bit means (the start)   0.98/0.96  0.97/0.95    0.98/0.96  0.98/0.96  0.83
#   64 code histograms         0.97/0.95  0.97/0.94    0.97/0.95  0.97/0.95  0.81
#   192 codes, 3 soft blocks   0.92/0.88  0.91/0.86    0.92/0.88  0.92/0.88  0.60
#   + MFCC x0.25 (chosen)      0.92/0.88  0.91/0.86    0.92/0.88  0.92/0.88  0.61
# Sub-blocks keep a little temporal order, which is what pushes unrelated windows down (the
# separation z = (p5 - mean_unrelated) / sd_unrelated goes 3.6 -> 5.7); soft (triangular,
# overlapping) blocks keep that order tolerant of a half-step grid offset. MFCC adds timbre at a
# small weight: more weight helps tempo/pitch-shifted copies but hurts noisy ones (x1.0: harsh
# noise p5 0.66 -> 0.23). A pitch shift (+-8%) defeats the Chromaprint part entirely (~0.2);
# the visual modality has to carry those.
N_BLOCKS = 3
MFCC_WEIGHT = 0.25
CODE_DIM = 16 * 4  # 16 Chromaprint classifiers, each a 2-bit (4-level) code
# Standardisation of the 13-coefficient MFCC window stats (mean then std), measured on the clips
# above with this module's MFCC settings at 11025 Hz; coefficients past 13 reuse the last value.
_MFCC_MU = np.array([-74.9, 59.5, -1.2, 16.5, -6.7, 4.1, -6.7, 0.4, -5.2, -1.4, -3.0, -2.0, -2.6])
_MFCC_SD = np.array([46.9, 12.6, 10.8, 5.2, 10.8, 4.5, 8.3, 4.4, 6.8, 5.8, 4.8, 5.6, 4.2])
_MFCC_STD_MU = np.array([28.2, 12.9, 9.8, 8.1, 7.1, 5.5, 5.9, 5.1, 5.1, 4.9, 5.0, 4.7, 4.4])
_MFCC_STD_SD = np.array([24.9, 8.6, 7.5, 6.7, 5.4, 3.0, 3.7, 2.6, 2.6, 2.5, 2.6, 2.1, 2.4])


MEL_BANDS = 40  # n_mels of the MFCC (``_mfcc``, StreamingAudioFeatures): no more coefficients exist


def vector_dim(n_mfcc: int) -> int:
    """Length of a window vector, so a store can create its collection before any audio arrives
    (a DCT of MEL_BANDS bands has MEL_BANDS coefficients, so a larger ``n_mfcc`` gives no more)."""
    return N_BLOCKS * CODE_DIM + 2 * min(n_mfcc, MEL_BANDS)


def item_times(k: int, hz: float = CHROMAPRINT_HZ) -> np.ndarray:
    """Time (s) each Chromaprint item stands for: the middle of the audio it was computed from."""
    return np.arange(k, dtype=np.float64) / hz + CP_ITEM_CENTRE_S


def _codes_onehot(chroma: np.ndarray) -> np.ndarray:
    """uint32 [K] -> float32 [K, 64]: one-hot of each classifier's 2-bit code (bits 2i, 2i+1)."""
    b = _bit_planes(chroma).astype(np.int64)
    codes = b[:, 0::2] + 2 * b[:, 1::2]  # [K, 16] in 0..3
    onehot = np.zeros((len(codes), 16, 4), np.float32)
    np.put_along_axis(onehot, codes[:, :, None], 1.0, axis=2)
    return onehot.reshape(len(codes), CODE_DIM)


def _pad(stat: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate([stat, np.full(max(0, n - len(stat)), stat[-1])])[:n]


def _standardise_mfcc(stats: np.ndarray) -> np.ndarray:
    n = stats.shape[1] // 2
    mu = np.concatenate([_pad(_MFCC_MU, n), _pad(_MFCC_STD_MU, n)])
    sd = np.concatenate([_pad(_MFCC_SD, n), _pad(_MFCC_STD_SD, n)])
    return (stats.astype(np.float64) - mu) / sd


def _code_blocks(chroma: np.ndarray, hz: float, windows: np.ndarray) -> np.ndarray:
    """[W, N_BLOCKS * 64] centred code histograms over soft sub-blocks of each window.

    Block k of window [s, e) weighs the items in the window by a triangle centred at
    s + (k + 0.5) * (e - s) / N with half-width (e - s) / N, so neighbouring blocks overlap and a
    small shift of the window moves weight gradually instead of items jumping between blocks.
    """
    w_n = len(windows)
    out = np.zeros((w_n, N_BLOCKS * CODE_DIM), np.float64)
    if w_n == 0 or len(chroma) == 0:
        return out
    x = _codes_onehot(chroma)
    t = item_times(len(chroma), hz)
    lo = np.searchsorted(t, windows[:, 0], side="left")
    hi = np.searchsorted(t, windows[:, 1], side="left")
    span = int(max(1, (hi - lo).max()))
    for c0 in range(0, w_n, 256):  # chunks bound the [chunk, span, 64] gather
        sl = slice(c0, min(w_n, c0 + 256))
        idx = lo[sl, None] + np.arange(span)[None, :]  # [c, span]
        valid = idx < hi[sl, None]
        idx = np.minimum(idx, len(t) - 1)
        ti, xi = t[idx], x[idx]  # [c, span], [c, span, 64]
        s, e = windows[sl, 0:1].astype(np.float64), windows[sl, 1:2].astype(np.float64)
        width = np.maximum(e - s, 1e-6) / N_BLOCKS
        for k in range(N_BLOCKS):
            centre = s + (k + 0.5) * width
            w = np.clip(1.0 - np.abs(ti - centre) / width, 0.0, None) * valid  # [c, span]
            tot = w.sum(1, keepdims=True)
            hist = np.einsum("cs,csd->cd", w, xi) / np.where(tot > 0, tot, 1.0)
            # Centre on the uniform code distribution; a block with no item contributes nothing.
            out[sl, k * CODE_DIM:(k + 1) * CODE_DIM] = np.where(tot > 0, hist - 0.25, 0.0)
    return out


def window_vectors(chroma: np.ndarray, hz: float, windows: np.ndarray,
                   mfcc_stats: np.ndarray) -> np.ndarray:
    """float32 [W, 192 + 2 * n_mfcc] L2-normalised vectors for inner-product KNN of audio windows.

    See the table above for why this shape; the same function must build index and query vectors.
    """
    windows = np.asarray(windows, np.float64).reshape(-1, 2)
    mfcc_stats = np.asarray(mfcc_stats, np.float64)
    if mfcc_stats.ndim != 2 or len(mfcc_stats) != len(windows):
        raise ValueError(f"mfcc_stats must be [W, 2 * n_mfcc] for W={len(windows)} windows, "
                         f"got {mfcc_stats.shape}")
    codes = l2_normalise(_code_blocks(np.asarray(chroma, np.uint32), hz, windows))
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
    loud = _window_rms(pcm, sr, windows.astype(np.float64)) >= SILENCE_RMS
    windows, stats = windows[loud], stats[loud]
    vectors = window_vectors(chroma, hz, windows, stats)
    return {
        "windows": windows.astype(np.float32),
        "vectors": vectors,
        "chromaprint": chroma,
        "chromaprint_hz": float(hz) if len(chroma) else 0.0,
    }


# --- The same features from a stream of PCM chunks (long tracks) ----------------------------

class StreamingAudioFeatures:
    """:func:`audio_features` computed from PCM chunks as they arrive, never holding the track.

    Why: a three-hour track is 119 M samples at 11025 Hz, 476 MB as float32, and librosa's STFT
    of it alone would take ~2 GB; fed chunk by chunk this class holds one chunk plus O(duration)
    summaries that are small per second of audio (40 mel bands per 46 ms frame, 3.4 KB/s, and two
    prefix sums per window), i.e. ~40 MB for three hours.

    It gives what :func:`audio_features` gives on the whole track, within float noise:

    * Chromaprint is a streaming algorithm: the same fingerprinter is fed every chunk.
    * MFCC frames are librosa's (``center=True``, zero padding): frame k covers samples
      [k * hop - n_fft / 2, k * hop + n_fft / 2) of the zero-padded track, so frames are computed
      with ``center=False`` on a buffer that carries the overlap between chunks. Mel power is kept
      (not dB) because ``power_to_db`` clips at 80 dB below the maximum *of the whole track*; the
      clip and the DCT run once that maximum is known, in chunks.
    * The silence tests need sums of squares: a running total for the whole-track RMS, and the
      prefix sum at every window boundary of the grid, recorded as the stream passes it.
    """

    def __init__(self, sr: int, cfg: AudioConfig, step: float | None = None) -> None:
        import chromaprint

        self.sr, self.cfg = int(sr), cfg
        self.step = float(cfg.step if step is None else step)
        self.n_fft = 1 << int(round(np.log2(0.186 * self.sr)))  # as _mfcc
        self.hop = self.n_fft // 4
        self._fp = chromaprint.Fingerprinter()
        self._fp.start(self.sr, 1)
        self._n = 0  # samples seen
        self._sq = 0.0  # running sum of squares (float64)
        # MFCC: the zero-padded track not yet turned into frames, starting at frame _k * hop.
        self._pending = np.zeros(self.n_fft // 2, np.float32)
        self._mel: list[np.ndarray] = []  # [40, f] float32 blocks of mel power
        # Window boundaries (sample index of each grid start / end) and the prefix sums there.
        self._bounds: dict[str, list[float]] = {"lo": [], "hi": []}
        self._next = {"lo": 0, "hi": 0}  # next grid index k whose boundary is not yet recorded

    def _boundary(self, side: str, k: int) -> int:
        """Sample index of window k's start or end, rounded exactly as window_grid and
        _window_rms round it (grid in float64, stored as float32, times sr, rint)."""
        s = np.float32(np.float64(k) * self.step + (self.cfg.window if side == "hi" else 0.0))
        return int(np.rint(np.float64(s) * self.sr))

    def feed(self, pcm: np.ndarray) -> None:
        """Take the next chunk of mono float32 PCM (any length)."""
        x = np.nan_to_num(np.asarray(pcm, np.float32).reshape(-1))
        if len(x) == 0:
            return
        self._fp.feed(_to_int16(x))
        sq = x.astype(np.float64) ** 2
        csum = np.concatenate([[0.0], np.cumsum(sq)])
        end = self._n + len(x)
        for side in ("lo", "hi"):
            while True:
                b = self._boundary(side, self._next[side])
                if b > end:
                    break
                self._bounds[side].append(self._sq + float(csum[b - self._n]) if b >= self._n
                                          else self._bounds[side][-1])
                self._next[side] += 1
        self._sq += float(csum[-1])
        self._n = end
        self._pending = np.concatenate([self._pending, x])
        self._frames(final=False)

    def _frames(self, final: bool) -> None:
        """Mel power of every frame the pending buffer fully covers (all of them when final)."""
        import librosa

        n = len(self._pending)
        if n < self.n_fft:
            return
        m = 1 + (n - self.n_fft) // self.hop  # frames available
        if not final and m < 64:  # small blocks cost librosa overhead; wait for more audio
            return
        used = (m - 1) * self.hop + self.n_fft
        mel = librosa.feature.melspectrogram(y=self._pending[:used], sr=self.sr, n_fft=self.n_fft,
                                             hop_length=self.hop, n_mels=40, norm="slaney",
                                             center=False)
        self._mel.append(mel.astype(np.float32, copy=False))
        self._pending = self._pending[m * self.hop:].copy()

    def finish(self) -> dict[str, np.ndarray | float]:
        """The features of everything fed, in :func:`audio_features`' format."""
        import chromaprint

        cfg, sr, n = self.cfg, self.sr, self._n
        encoded = self._fp.finish() if n else b""
        if n == 0 or float(np.sqrt(self._sq / n)) < SILENCE_RMS:
            return empty_audio_features(cfg.n_mfcc)
        chroma = np.zeros((0,), np.uint32)
        if encoded:
            ints, _algorithm = chromaprint.decode_fingerprint(encoded)
            chroma = np.asarray(ints, np.int64).astype(np.uint32)
        hz = CHROMAPRINT_HZ
        # librosa pads a track shorter than one FFT frame with silence first (see _mfcc), then
        # centre-pads both ends with n_fft / 2 zeros.
        tail = max(0, self.n_fft - n) + self.n_fft // 2
        self._pending = np.concatenate([self._pending, np.zeros(tail, np.float32)])
        self._frames(final=True)
        mel = np.concatenate(self._mel, axis=1) if self._mel else np.zeros((40, 0), np.float32)
        self._mel = []
        mfcc = self._mfcc_from_mel(mel)
        del mel
        t = np.arange(len(mfcc), dtype=np.float64) * self.hop / sr
        windows = window_grid(n / float(sr), cfg.window, self.step)
        if len(windows) == 0:
            return empty_audio_features(cfg.n_mfcc)
        cnt, s1, s2 = _window_sums(mfcc, t, windows.astype(np.float64))
        cnt = np.maximum(cnt, 1.0)[:, None]
        mean = s1 / cnt
        std = np.sqrt(np.maximum(s2 / cnt - mean * mean, 0.0))
        stats = np.concatenate([mean, std], axis=1).astype(np.float32)
        loud = self._window_rms(windows) >= SILENCE_RMS
        windows, stats = windows[loud], stats[loud]
        return {
            "windows": windows.astype(np.float32),
            "vectors": window_vectors(chroma, hz, windows, stats),
            "chromaprint": chroma,
            "chromaprint_hz": float(hz) if len(chroma) else 0.0,
        }

    def _mfcc_from_mel(self, mel: np.ndarray, block: int = 8192) -> np.ndarray:
        """librosa.feature.mfcc's last steps (power_to_db with top_db=80 over the whole track,
        orthonormal DCT-II, first n_mfcc rows), block by block once the global max is known."""
        import librosa

        fft = librosa.get_fftlib()
        amin, top_db = 1e-10, 80.0
        out = np.zeros((mel.shape[1], self.cfg.n_mfcc), np.float64)
        if mel.shape[1] == 0:
            return out
        # In mel's dtype (float32), operation for operation as power_to_db, so the clip matches.
        floor = 10.0 * np.log10(np.maximum(amin, mel.max())) - top_db
        for c0 in range(0, mel.shape[1], block):
            db = 10.0 * np.log10(np.maximum(amin, mel[:, c0:c0 + block]))
            db = np.maximum(db, floor)
            m = fft.dct(db, axis=-2, type=2, norm="ortho")[: self.cfg.n_mfcc]
            out[c0:c0 + block] = m.T
        return out

    def _window_rms(self, windows: np.ndarray) -> np.ndarray:
        """RMS per window from the prefix sums recorded at its boundaries (clipped to the track)."""
        w = len(windows)
        n, sr = self._n, self.sr
        if w == 1 and n / float(sr) < self.cfg.window:  # the one short window is the whole track
            return np.array([np.sqrt(self._sq / max(n, 1))])

        def prefix(side: str) -> tuple[np.ndarray, np.ndarray]:
            got = self._bounds[side][:w]
            vals = np.array(got + [self._sq] * (w - len(got)), np.float64)
            pos = np.array([min(self._boundary(side, k), n) for k in range(w)], np.int64)
            return vals, pos

        (c_lo, lo), (c_hi, hi) = prefix("lo"), prefix("hi")
        return np.sqrt((c_hi - c_lo) / np.maximum(hi - lo, 1))
