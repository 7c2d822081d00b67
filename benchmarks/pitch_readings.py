"""What a query's pitch readings cost (features/pitch_variants.py), at two lengths of the same files.

    .venv/bin/python benchmarks/pitch_readings.py --bench /work/benchdata/hard10_s5 [--files 4] [--lengths 30,0]

For each query file: its audio is decoded once, then, per length (0 = the whole file), the CPU
seconds of this process to make the readings of

* ``knn``: the shifts the KNN asks (``search.pitch_knn``: the four whole semitones, what every
  query read before the quarter-semitone grid),
* ``grid``: every ``audio.query_pitch`` shift (the default 16), one STFT shared by all,
* ``grid, an STFT each``: the same 16 with the MFCC computed from the samples for each reading, as
  before the STFT was shared (``features.mfcc.mfcc_frames`` per rate),

each as ms of CPU per second of audio and as a ratio to ``knn`` in the same run (the machine may be
shared: CPU time, not wall). The readings are query-only: indexing is unchanged.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from astradup.config import load_config  # noqa: E402
from astradup.features.audio import audio_features, vector_dim, window_vectors  # noqa: E402
from astradup.features.chromaprint import chromaprint_ints  # noqa: E402
from astradup.features.mfcc import mfcc_frames, window_stats  # noqa: E402
from astradup.features.pitch_variants import pitch_variants  # noqa: E402
from astradup.io.decode import decode_video  # noqa: E402
from astradup.records import VideoRef  # noqa: E402


def an_stft_each(pcm: np.ndarray, sr: int, shifts, n_mfcc: int, windows: np.ndarray) -> np.ndarray:
    """``pitch_variants`` as it was before the readings shared one STFT (the baseline of that step)."""
    out = np.zeros((len(shifts), len(windows), vector_dim(n_mfcc)), np.float32)
    for i, semis in enumerate(shifts):
        rate = int(round(sr * 2.0 ** (float(semis) / 12.0)))
        scale = rate / float(sr)
        chroma, hz = chromaprint_ints(pcm, rate)
        m, t = mfcc_frames(pcm, rate, n_mfcc)
        out[i] = window_vectors(chroma, hz, windows, window_stats(m, t * scale, windows), time_scale=scale)
    return out


def cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="a make_bench.py folder (its queries/ are read)")
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--lengths", default="30,0", help="seconds of each file's audio to read; 0 = all")
    args = ap.parse_args()

    cfg = load_config(None, {"data_dir": "/tmp/pitch_readings"})
    knn = dataclasses.replace(cfg.audio, query_pitch=cfg.search.pitch_knn)
    files = sorted((Path(args.bench) / "queries").glob("*.mp4"))[:args.files]
    lengths = [float(x) for x in args.lengths.split(",")]
    print(f"{len(cfg.search.pitch_knn)} KNN shifts, {len(cfg.audio.query_pitch)} grid shifts; "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'file':<10} {'audio s':>8} | {'knn ms/s':>8} {'grid ms/s':>9} {'x knn':>6} | "
          f"{'STFT each ms/s':>14} {'x knn':>6}")
    totals: dict[float, np.ndarray] = {}
    warm = np.sin(np.arange(10 * 11025) * 0.05).astype(np.float32)  # librosa / Chromaprint first-call costs
    pitch_variants(warm, 11025, cfg.audio, audio_features(warm, 11025, cfg.audio)["windows"])
    for path in files:
        dec = decode_video(str(path), VideoRef("bench", str(path), path.stat().st_size), cfg.decode)
        if dec.audio is None or not len(dec.audio):
            continue
        sr = dec.sample_rate
        for length in lengths:
            pcm = np.asarray(dec.audio, np.float32).reshape(-1)
            pcm = pcm[:int(length * sr)] if length > 0 else pcm
            sec = len(pcm) / sr
            windows = audio_features(pcm, sr, cfg.audio, step=cfg.audio.query_step)["windows"]
            a = cpu(lambda: pitch_variants(pcm, sr, knn, windows))
            b = cpu(lambda: pitch_variants(pcm, sr, cfg.audio, windows))
            c = cpu(lambda: an_stft_each(pcm, sr, cfg.audio.query_pitch, cfg.audio.n_mfcc, windows))
            totals[length] = totals.get(length, np.zeros(4)) + [sec, a, b, c]
            print(f"{path.stem:<10} {sec:8.1f} | {1000 * a / sec:8.1f} {1000 * b / sec:9.1f} {b / a:6.2f} | "
                  f"{1000 * c / sec:14.1f} {c / a:6.2f}")
    for length, (sec, a, b, c) in totals.items():
        name = "whole files" if length <= 0 else f"first {length:g} s"
        print(f"{name}: {sec:.0f} s of audio; knn {1000 * a / sec:.1f} ms/s, grid {1000 * b / sec:.1f} ms/s "
              f"({b / a:.2f}x), an STFT each {1000 * c / sec:.1f} ms/s ({c / a:.2f}x)")


if __name__ == "__main__":
    main()
