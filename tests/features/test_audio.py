"""Audio fingerprints: same recording -> high, different recording -> chance, odd input -> no crash."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from astradup.config import AudioConfig
from astradup.features import audio as A
from astradup.features import chromaprint as C
from astradup.features import mfcc as M
from tests.media import synth_music, synth_speech, write_wav

SR = 11025


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    return synth_music(20, SR, seed=1)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return synth_speech(20, SR, seed=1)


def _noisy(x: np.ndarray, level: float = 0.03) -> np.ndarray:
    return (x + level * np.random.default_rng(7).standard_normal(len(x))).astype(np.float32)


def _quieter(x: np.ndarray) -> np.ndarray:
    return (x * 10 ** (-6 / 20)).astype(np.float32)


def _lossy(x: np.ndarray, tmp_path, codec: str) -> np.ndarray:
    wav = write_wav(tmp_path / "in.wav", x, SR)
    out = tmp_path / ("rt.mp3" if codec == "libmp3lame" else "rt.m4a")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(wav), "-c:a", codec,
                    "-b:a", "64k", str(out)], check=True)
    raw = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(out), "-ac", "1",
                          "-ar", str(SR), "-f", "f32le", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.float32).copy()


def _naive_similarity(a: np.ndarray, b: np.ndarray) -> float:
    k1, k2 = len(a), len(b)
    best = 0.0
    for o in range(-(k1 - 1), k2):
        i0, i1 = max(0, -o), min(k1, k2 - o)
        n = i1 - i0
        if n < max(1, min(k1, k2) // 2):
            continue
        diff = sum(bin(int(v)).count("1") for v in (a[i0:i1] ^ b[i0 + o:i1 + o]))
        best = max(best, 1.0 - diff / (32.0 * n))
    return best


# --- Chromaprint ---------------------------------------------------------------------------------

def test_chromaprint_rate_matches_measurement():
    """hz is derived from Chromaprint's constants; check it against item counts of real runs."""
    durations = np.array([10.0, 20.0, 40.0])
    counts = [len(C.chromaprint_ints(synth_music(d, SR, seed=3), SR)[0]) for d in durations]
    slope = np.polyfit(durations, counts, 1)[0]
    _, hz = C.chromaprint_ints(synth_music(5, SR), SR)
    assert abs(slope - hz) < 0.05, (slope, hz)
    assert abs(hz - 8.0769) < 1e-3
    # Exact item count of a long signal pins the hop down (1366 would lose 2 items here).
    n = SR * 150
    noise = (0.1 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)
    k = len(C.chromaprint_ints(noise, SR)[0])
    assert k == (n - C.CP_FRAME) // C.CP_HOP + 1 - (C.CP_ITEM_FRAMES - 1)


def test_chromaprint_ints_types_and_sample_rate_independence(music):
    a, hz = C.chromaprint_ints(music, SR)
    assert a.dtype == np.uint32 and a.ndim == 1 and len(a) > 100
    assert 8.0 < hz < 8.2
    # The library resamples to 11025 Hz itself: the same audio given at 22050 Hz agrees.
    up = np.repeat(music, 2)  # crude 2x upsampling is plenty for a low-rate chroma fingerprint
    b, _ = C.chromaprint_ints(up, 2 * SR)
    assert C.chromaprint_similarity(a, b) > 0.9


def test_identical_audio_similarity_is_one(music):
    a, _ = C.chromaprint_ints(music, SR)
    assert C.chromaprint_similarity(a, a.copy()) == 1.0


@pytest.mark.parametrize("edit", ["noise", "minus6db", "mp3", "aac"])
@pytest.mark.parametrize("kind", ["music", "speech"])
def test_transformed_copy_keeps_high_similarity(music, speech, tmp_path, edit, kind):
    x = music if kind == "music" else speech
    y = {"noise": lambda: _noisy(x), "minus6db": lambda: _quieter(x),
         "mp3": lambda: _lossy(x, tmp_path, "libmp3lame"), "aac": lambda: _lossy(x, tmp_path, "aac")}[edit]()
    a, _ = C.chromaprint_ints(x, SR)
    b, _ = C.chromaprint_ints(y, SR)
    assert C.chromaprint_similarity(a, b) > 0.8


@pytest.mark.parametrize("gen", [synth_music, synth_speech])
def test_unrelated_audio_is_near_chance(gen):
    a, _ = C.chromaprint_ints(gen(20, SR, seed=1), SR)
    b, _ = C.chromaprint_ints(gen(20, SR, seed=2), SR)
    s = C.chromaprint_similarity(a, b)
    assert 0.35 < s < 0.65, s


def test_excerpt_is_found_inside_longer_track(music):
    """A 8 s excerpt starting 6 s in: the best offset lines it up, like a partial copy."""
    a, hz = C.chromaprint_ints(music, SR)
    b, _ = C.chromaprint_ints(music[6 * SR:14 * SR], SR)
    assert C.chromaprint_similarity(a, b) > 0.9
    # Restricting offsets away from the true one (~6 s * hz items) loses the match.
    assert C.chromaprint_similarity(a, b, max_offset=int(2 * hz)) < 0.7


def test_similarity_matches_naive_loop():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**32, 40, dtype=np.uint64).astype(np.uint32)
    b = np.concatenate([rng.integers(0, 2**32, 7, dtype=np.uint64).astype(np.uint32), a[5:30]])
    b[10] ^= np.uint32(0xFFFF)
    for x, y in [(a, b), (b, a), (a[:3], b), (a[:1], a[:1]), (a, a[:20])]:
        assert C.chromaprint_similarity(x, y) == pytest.approx(_naive_similarity(x, y), abs=1e-9)


def test_similarity_of_empty_is_zero():
    a = np.arange(10, dtype=np.uint32)
    assert C.chromaprint_similarity(a, np.zeros(0, np.uint32)) == 0.0
    assert C.chromaprint_similarity(np.zeros(0, np.uint32), a) == 0.0


# --- MFCC windows --------------------------------------------------------------------------------

def test_mfcc_windows_grid_and_shapes(music):
    w, stats = M.mfcc_windows(music, SR, window=5.0, step=1.0, n_mfcc=13)
    assert w.dtype == np.float32 and stats.dtype == np.float32
    assert len(w) == 16 and stats.shape == (16, 26)  # starts 0..15 for 20 s
    np.testing.assert_allclose(w[:, 1] - w[:, 0], 5.0)
    np.testing.assert_allclose(np.diff(w[:, 0]), 1.0)
    assert np.all(stats[:, 13:] >= 0)  # stds


def test_short_clip_gives_one_window(music):
    w, stats = M.mfcc_windows(music[: int(2.5 * SR)], SR, window=5.0, step=1.0, n_mfcc=13)
    assert w.shape == (1, 2) and w[0, 0] == 0.0 and w[0, 1] == pytest.approx(2.5, abs=1e-3)
    assert stats.shape == (1, 26) and np.isfinite(stats).all()


def test_silence_has_no_nan():
    w, stats = M.mfcc_windows(np.zeros(8 * SR, np.float32), SR, 5.0, 1.0, 13)
    assert len(w) == 4 and np.isfinite(stats).all()


# --- Window vectors ------------------------------------------------------------------------------

def _feats(x: np.ndarray, offset: float = 0.0) -> dict:
    return A.audio_features(x[int(round(offset * SR)):], SR, AudioConfig(window=5.0, step=1.0, n_mfcc=13))


def _same_time_scores(src: dict, qry: dict, offset: float) -> np.ndarray:
    """For each query window, the inner product with the source window(s) covering the same audio:
    query window at q starts at source time q + offset; the nearest grid windows are compared."""
    sims = qry["vectors"] @ src["vectors"].T
    starts = src["windows"][:, 0]
    out = []
    for i, (qs, _) in enumerate(qry["windows"]):
        target = qs + offset
        near = np.nonzero(np.abs(starts - target) <= 0.5 + 1e-6)[0]
        if len(near):
            out.append(sims[i, near].max())
    return np.array(out)


@pytest.mark.parametrize("kind", ["music", "speech"])
def test_window_vectors_match_transformed_copy_at_same_time(music, speech, tmp_path, kind):
    x = music if kind == "music" else speech
    src = _feats(x)
    d = src["vectors"].shape[1]
    assert src["vectors"].dtype == np.float32 and d == A.vector_dim(13)
    np.testing.assert_allclose(np.linalg.norm(src["vectors"], axis=1), 1.0, atol=1e-5)
    for y in (_noisy(x), _quieter(x), _lossy(x, tmp_path, "aac")):
        s = _same_time_scores(src, _feats(y), 0.0)
        assert len(s) >= 10 and s.min() > 0.8, s


@pytest.mark.parametrize("kind", ["music", "speech"])
def test_window_vectors_tolerate_half_step_offset(music, speech, tmp_path, kind):
    x = music if kind == "music" else speech
    src = _feats(x)
    for y in (x, _lossy(x, tmp_path, "libmp3lame")):
        s = _same_time_scores(src, _feats(y, offset=0.5), 0.5)
        assert len(s) >= 10 and s.min() > 0.8, s


@pytest.mark.parametrize("gen", [synth_music, synth_speech])
def test_window_vectors_separate_unrelated_audio(gen):
    x, y = gen(20, SR, seed=1), gen(20, SR, seed=2)
    src, other = _feats(x), _feats(y)
    genuine = _same_time_scores(src, _feats(_noisy(x), offset=0.5), 0.5)
    unrelated = (other["vectors"] @ src["vectors"].T).ravel()
    assert unrelated.max() < 0.7, unrelated.max()
    assert genuine.min() - unrelated.max() > 0.15


# --- Whole-track features ------------------------------------------------------------------------

def test_audio_features_shapes(music):
    f = A.audio_features(music, SR, AudioConfig())
    assert set(f) == {"windows", "vectors", "chromaprint", "chromaprint_hz"}
    assert f["windows"].shape == (16, 2) and f["windows"].dtype == np.float32
    assert f["vectors"].shape == (16, A.vector_dim(13))
    assert f["chromaprint"].dtype == np.uint32 and len(f["chromaprint"]) > 100
    assert f["chromaprint_hz"] == pytest.approx(C.CHROMAPRINT_HZ)
    # A query step other than the config's.
    assert len(A.audio_features(music, SR, AudioConfig(), step=2.0)["windows"]) == 8


@pytest.mark.parametrize("pcm", [None, np.zeros(0, np.float32), np.zeros(6 * SR, np.float32)])
def test_audio_features_of_none_empty_or_silence_are_empty(pcm):
    f = A.audio_features(pcm, SR, AudioConfig())
    assert f["windows"].shape == (0, 2) and f["windows"].dtype == np.float32
    assert f["vectors"].shape == (0, A.vector_dim(13)) and f["vectors"].dtype == np.float32
    assert f["chromaprint"].shape == (0,) and f["chromaprint"].dtype == np.uint32
    assert f["chromaprint_hz"] == 0.0


def test_silent_windows_are_dropped(music):
    x = np.concatenate([np.zeros(8 * SR, np.float32), music[: 10 * SR]])
    f = A.audio_features(x, SR, AudioConfig())
    assert len(f["windows"]) > 0 and f["windows"][:, 1].min() > 3.0  # no all-silent window kept
    assert np.isfinite(f["vectors"]).all()


def test_very_short_audio_does_not_crash():
    x = synth_music(0.5, SR)
    f = A.audio_features(x, SR, AudioConfig())
    assert f["windows"].shape == (1, 2) and np.isfinite(f["vectors"]).all()
    assert len(f["chromaprint"]) == 0 and f["chromaprint_hz"] == 0.0


def _code_blocks_by_definition(chroma, hz, windows, time_scale=1.0):
    """code_blocks written as its docstring says, one window, block and item at a time."""
    t = C.item_times(len(chroma), hz) * time_scale
    out = np.zeros((len(windows), A.N_BLOCKS * A.CODE_DIM))
    for w, (s, e) in enumerate(np.asarray(windows, np.float64)):
        width = max(e - s, 1e-6) / A.N_BLOCKS
        for k in range(A.N_BLOCKS):
            centre = s + (k + 0.5) * width
            hist, tot = np.zeros(A.CODE_DIM), 0.0
            for i in np.flatnonzero((t >= s) & (t < e)):
                weight = max(0.0, 1.0 - abs(t[i] - centre) / width)
                codes = [(int(chroma[i]) >> (2 * j)) & 3 for j in range(16)]
                hist[[4 * j + c for j, c in enumerate(codes)]] += weight
                tot += weight
            if tot > 0:
                out[w, k * A.CODE_DIM:(k + 1) * A.CODE_DIM] = hist / tot - 0.25
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_code_blocks_match_their_definition(seed):
    """The sparse-product form (no per-window gather) gives the triangle-weighted histograms of the
    definition: the real 0.5 s grid of 5 s windows, windows past either end of the track, empty
    and reversed windows, and a track read at another rate (pitch variants)."""
    rng = np.random.default_rng(seed)
    chroma = rng.integers(0, 2**32, 160, dtype=np.uint64).astype(np.uint32)
    hz = C.CHROMAPRINT_HZ
    grid = np.arange(0, 16, 0.5)
    windows = np.concatenate([np.stack([grid, grid + 5], 1),
                              [[-3.0, 2.0], [18.0, 25.0], [30.0, 35.0], [4.0, 4.0], [6.0, 5.0], [0.0, 1e-7]]])
    for scale in (1.0, 0.94, 1.06):
        got = A.code_blocks(chroma, hz, windows, time_scale=scale)
        assert got.shape == (len(windows), A.N_BLOCKS * A.CODE_DIM)
        assert np.allclose(got, _code_blocks_by_definition(chroma, hz, windows, scale), atol=1e-12)
    assert not A.code_blocks(chroma, hz, windows[-4:]).any()  # no item inside: nothing
    assert A.code_blocks(chroma[:0], hz, windows).shape == (len(windows), A.N_BLOCKS * A.CODE_DIM)
