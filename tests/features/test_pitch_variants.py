"""Query-side pitch variants (features/pitch_variants.py): each variant's row w describes the query's
window w, and the variant that undoes a pitch shift matches the source where the plain vectors do not."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from astradup.config import load_config
from astradup.features.audio import audio_features, vector_dim
from astradup.features.pitch_variants import pitch_variants
from tests.media import synth_music

SR = 11025


def _faster(pcm: np.ndarray, factor: float) -> np.ndarray:
    """The track played ``factor`` times faster: pitch and tempo up by ``factor`` (a tape speed-up)."""
    n = int(len(pcm) / factor)
    return np.interp(np.arange(n) * factor, np.arange(len(pcm)), pcm).astype(np.float32)


@pytest.fixture(scope="module")
def cfg():
    return load_config(None, {})


def test_variants_have_one_row_per_query_window(cfg):
    pcm = synth_music(12, SR, seed=3)
    f = audio_features(pcm, SR, cfg.audio, step=0.5)
    pv, codes = pitch_variants(pcm, SR, cfg.audio, f["windows"])
    assert len(codes) == len(pv) and all(c.shifted and len(c.codes) == len(c.times) for c in codes)
    assert pv.shape == (len(cfg.audio.query_pitch), len(f["windows"]), vector_dim(cfg.audio.n_mfcc))
    assert np.allclose(np.linalg.norm(pv, axis=2), 1.0, atol=1e-4)
    # a shift of +1 then read back is not the plain vectors: the variants carry other content
    up1 = list(cfg.audio.query_pitch).index(1.0)
    assert float(np.mean(np.sum(pv[up1] * f["vectors"], axis=1))) < 0.95


def test_nothing_to_vary_gives_no_variants(cfg):
    pcm = synth_music(8, SR, seed=3)
    windows = audio_features(pcm, SR, cfg.audio)["windows"]
    off = load_config(None, {"audio": {"query_pitch": []}}).audio
    assert pitch_variants(pcm, SR, off, windows)[0].shape == (0, len(windows), vector_dim(off.n_mfcc))
    assert pitch_variants(None, SR, cfg.audio, windows)[0].shape[0] == 0
    assert pitch_variants(pcm, SR, cfg.audio, np.zeros((0, 2), np.float32))[0].shape == \
        (0, 0, vector_dim(cfg.audio.n_mfcc))
    assert pitch_variants(None, SR, cfg.audio, windows)[1] == ()


def test_the_variant_that_undoes_the_shift_matches_the_source_at_the_right_time(cfg):
    src = synth_music(30, SR, seed=11)
    factor = 2 ** (2 / 12)  # two semitones up (and faster)
    query = _faster(src[5 * SR:25 * SR], factor)
    fs = audio_features(src, SR, cfg.audio)
    fq = audio_features(query, SR, cfg.audio, step=0.5)
    other = audio_features(synth_music(30, SR, seed=12), SR, cfg.audio)
    pv, _ = pitch_variants(query, SR, cfg.audio, fq["windows"])
    down2 = pv[list(cfg.audio.query_pitch).index(-2.0)]

    plain = (fq["vectors"] @ fs["vectors"].T).max(axis=1).mean()
    undone = down2 @ fs["vectors"].T
    unrelated = (down2 @ other["vectors"].T).max(axis=1).mean()
    assert undone.max(axis=1).mean() > 0.85 > 0.6 > plain
    assert undone.max(axis=1).mean() - unrelated > 0.25
    # query time t was source time 5 + t * factor: the best source window sits there
    q_centre = fq["windows"].mean(axis=1)
    s_centre = fs["windows"].mean(axis=1)[undone.argmax(axis=1)]
    inner = (q_centre > 3) & (q_centre < q_centre.max() - 3)
    assert np.median(np.abs(s_centre[inner] - (5 + q_centre[inner] * factor))) <= 1.0


def test_a_shift_between_whole_semitones_needs_the_fine_readings(cfg):
    """A tape slowed to x0.88 is 2.21 semitones down: the whole-semitone readings (``search.pitch_knn``,
    what the KNN asks) miss it by 0.21 and read it near unrelated music, while the quarter-semitone
    grid of ``audio.query_pitch`` (what the alignment takes) reads it back."""
    src = synth_music(30, SR, seed=11)
    query = _faster(src[5 * SR:25 * SR], 0.88)
    fs = audio_features(src, SR, cfg.audio)
    fq = audio_features(query, SR, cfg.audio, step=0.5)
    other = audio_features(synth_music(30, SR, seed=12), SR, cfg.audio)

    def best(shifts, to):
        pv, _ = pitch_variants(query, SR, dataclasses.replace(cfg.audio, query_pitch=shifts), fq["windows"])
        return float(np.einsum("vwd,sd->vws", pv, to["vectors"]).max(axis=(0, 2)).mean())

    fine, coarse = best(cfg.audio.query_pitch, fs), best(cfg.search.pitch_knn, fs)
    assert fine > 0.75 and fine - coarse > 0.15
    assert fine - best(cfg.audio.query_pitch, other) > 0.15


def test_readings_share_one_stft_and_get_librosas_mfcc_at_their_rate():
    """features/mfcc.py splits the MFCC into the frames' power (rate-free) and the mel filters (the
    rate), so the 16 readings pay one STFT; each reading's MFCC is still what librosa computes for
    the samples told to be at that rate."""
    import librosa

    from astradup.features.mfcc import MEL_BANDS, fft_size, mfcc_of_power, power_frames

    pcm = synth_music(6, SR, seed=4)
    power = power_frames(pcm, fft_size(SR))
    for semis in (-2.5, 1.25, 2.5):
        rate = int(round(SR * 2 ** (semis / 12)))
        assert fft_size(rate) == fft_size(SR)
        m, t = mfcc_of_power(power, rate, 13)
        ref = librosa.feature.mfcc(y=pcm, sr=rate, n_mfcc=13, n_fft=fft_size(rate), hop_length=fft_size(rate) // 4,
                                   n_mels=MEL_BANDS).T
        assert m.shape == ref.shape and np.allclose(m, ref, atol=1e-3)
        assert np.allclose(t, np.arange(len(m)) * (fft_size(rate) // 4) / rate)
