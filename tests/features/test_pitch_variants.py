"""Query-side pitch variants (features/pitch_variants.py): each variant's row w describes the query's
window w, and the variant that undoes a pitch shift matches the source where the plain vectors do not."""
from __future__ import annotations

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
    pv = pitch_variants(pcm, SR, cfg.audio, f["windows"])
    assert pv.shape == (len(cfg.audio.query_pitch), len(f["windows"]), vector_dim(cfg.audio.n_mfcc))
    assert np.allclose(np.linalg.norm(pv, axis=2), 1.0, atol=1e-4)
    # a shift of +1 then read back is not the plain vectors: the variants carry other content
    assert float(np.mean(np.sum(pv[2] * f["vectors"], axis=1))) < 0.95


def test_nothing_to_vary_gives_no_variants(cfg):
    pcm = synth_music(8, SR, seed=3)
    windows = audio_features(pcm, SR, cfg.audio)["windows"]
    off = load_config(None, {"audio": {"query_pitch": []}}).audio
    assert pitch_variants(pcm, SR, off, windows).shape == (0, len(windows), vector_dim(off.n_mfcc))
    assert pitch_variants(None, SR, cfg.audio, windows).shape[0] == 0
    assert pitch_variants(pcm, SR, cfg.audio, np.zeros((0, 2), np.float32)).shape == \
        (0, 0, vector_dim(cfg.audio.n_mfcc))


def test_the_variant_that_undoes_the_shift_matches_the_source_at_the_right_time(cfg):
    src = synth_music(30, SR, seed=11)
    factor = 2 ** (2 / 12)  # two semitones up (and faster)
    query = _faster(src[5 * SR:25 * SR], factor)
    fs = audio_features(src, SR, cfg.audio)
    fq = audio_features(query, SR, cfg.audio, step=0.5)
    other = audio_features(synth_music(30, SR, seed=12), SR, cfg.audio)
    pv = pitch_variants(query, SR, cfg.audio, fq["windows"])
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
