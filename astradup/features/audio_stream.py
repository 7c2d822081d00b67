"""A track's audio features computed from a stream of PCM chunks, never holding the track.

For long files (io/decode.decode_streamed): the result equals features/audio.audio_features on the
whole track within float noise.
"""
from __future__ import annotations

import numpy as np

from astradup.config import AudioConfig
from astradup.features.audio import SILENCE_RMS, empty_audio_features, loud_features
from astradup.features.chromaprint import CHROMAPRINT_HZ, fingerprint_ints, pcm_int16
from astradup.features.mfcc import fft_size, window_grid, window_stats


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
        self.n_fft = fft_size(self.sr)  # as mfcc_frames
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
        features/audio.py rounds it (grid in float64, stored as float32, times sr, rint)."""
        s = np.float32(np.float64(k) * self.step + (self.cfg.window if side == "hi" else 0.0))
        return int(np.rint(np.float64(s) * self.sr))

    def feed(self, pcm: np.ndarray) -> None:
        """Take the next chunk of mono float32 PCM (any length)."""
        x = np.nan_to_num(np.asarray(pcm, np.float32).reshape(-1))
        if len(x) == 0:
            return
        self._fp.feed(pcm_int16(x))
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
        cfg, sr, n = self.cfg, self.sr, self._n
        encoded = self._fp.finish() if n else b""
        if n == 0 or float(np.sqrt(self._sq / n)) < SILENCE_RMS:
            return empty_audio_features(cfg.n_mfcc)
        chroma = fingerprint_ints(encoded)
        # librosa pads a track shorter than one FFT frame with silence first (see mfcc_frames), then
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
        stats = window_stats(mfcc, t, windows)
        return loud_features(chroma, CHROMAPRINT_HZ, windows, stats, self._window_rms(windows))

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
