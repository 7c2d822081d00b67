"""Query-side pitch variants of a track's audio window vectors: finds copies whose pitch was shifted.

Chromaprint codes are chroma (pitch class) features and the MFCC's mel bands are pitch-bound, so a
copy shifted by a semitone or two looks unrelated to its source: on the hard benchmark's four seeds
the 7 audio-only copies under ``pitch x0.88-1.12`` were all missed, their windows' best similarity
to the source 0.13-0.16. Reading the query's PCM as if it were sampled ``2 ** (s / 12)`` times
faster shifts its pitch back by ``s`` semitones (tempo changes too, which the windows' pooled
statistics barely see), and raised those similarities to 0.73-0.75. Only the query pays: the index
keeps one vector per window, as the mirrored-frame query does for flips (features/extract.py).

The reading must land within about a quarter semitone of the shift: Chromaprint's 12 chroma bins
are a semitone wide, so a copy at x1.08 (1.33 semitones) read back by 1 matched its source at
0.68-0.78 and by 1.25 at 0.88 (hard seed 6), and a tape slowed to x0.88 (2.21 semitones) read back
by 2 stays near unrelated music (tests/features/test_pitch_variants.py). ``audio.query_pitch``
is therefore a quarter-semitone grid (16 readings, 18-21 ms of CPU per second of query audio, 3.5-4.6x
the 4 whole semitones: benchmarks/pitch_readings.py); only
``search.pitch_knn``'s whole semitones ask the KNN (match/query_rows.knn_variants).
"""
from __future__ import annotations

import numpy as np

from astradup.config import AudioConfig
from astradup.records import CodeReading
from astradup.features.audio import vector_dim, window_vectors
from astradup.features.chromaprint import chromaprint_ints, code_reading
from astradup.features.mfcc import fft_size, mfcc_of_power, power_frames, window_stats


def pitch_variants(pcm: np.ndarray | None, sr: int, cfg: AudioConfig, windows: np.ndarray
                   ) -> tuple[np.ndarray, tuple[CodeReading, ...]]:
    """(float32 [V, W, D], V code readings): for each of ``cfg.query_pitch``'s semitone shifts, the
    vectors of the track's own windows (``windows``, seconds on the track's axis) with its pitch
    moved by that many semitones, and the Chromaprint codes of that reading (which confirm an audio
    piece's line: match/audio_confirm.py); V = 0 when the list is empty or the track has no windows.

    The track is read at ``sr * 2 ** (s / 12)`` (no resampling: Chromaprint and the MFCC are told
    another rate), and each feature's times are mapped back onto the track's axis, so row w of every
    variant describes the same stretch of the query as row w of its plain vectors: alignment can
    take the best of them per window pair."""
    windows = np.asarray(windows, np.float64).reshape(-1, 2)
    dim = vector_dim(cfg.n_mfcc)
    shifts = list(cfg.query_pitch)
    if pcm is None or not len(pcm) or not len(windows) or not shifts:
        return np.zeros((0, len(windows), dim), np.float32), ()
    pcm = np.nan_to_num(np.asarray(pcm, np.float32).reshape(-1))
    out = np.zeros((len(shifts), len(windows), dim), np.float32)
    codes = []
    power = {}  # one STFT per frame length: a reading changes the mel filters, not the frames
    for i, semis in enumerate(shifts):
        rate = int(round(sr * 2.0 ** (float(semis) / 12.0)))
        scale = rate / float(sr)  # a time t read at ``rate`` is t * scale on the track's axis
        chroma, hz = chromaprint_ints(pcm, rate)
        n_fft = fft_size(rate)
        if n_fft not in power:
            power[n_fft] = power_frames(pcm, n_fft)
        m, t = mfcc_of_power(power[n_fft], rate, cfg.n_mfcc)
        stats = window_stats(m, t * scale, windows)
        out[i] = window_vectors(chroma, hz, windows, stats, time_scale=scale)
        codes.append(code_reading(chroma, hz, scale, shifted=True))
    return out, tuple(codes)
