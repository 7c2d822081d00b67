"""features.audio.vector_dim: the width of an audio window vector, known without running the
pipeline (the catalog sizes its Milvus collection and checks fingerprint files with it)."""
from __future__ import annotations

import numpy as np
import pytest

from astradup.config import AudioConfig
from astradup.features import audio as A
from astradup.features.mfcc import MEL_BANDS
from tests.media import synth_music

SR = 11025


@pytest.fixture(scope="module")
def music():
    return synth_music(8.0, SR, seed=3)


@pytest.mark.parametrize("n_mfcc", [1, 13, MEL_BANDS])
def test_vector_dim_is_what_the_pipeline_builds(music, n_mfcc):
    cfg = AudioConfig(n_mfcc=n_mfcc)
    vectors = A.audio_features(music, SR, cfg)["vectors"]
    assert len(vectors) > 0
    assert vectors.shape[1] == A.vector_dim(n_mfcc)


def test_vector_dim_of_the_default_config():
    assert A.vector_dim(AudioConfig().n_mfcc) == A.N_BLOCKS * A.CODE_DIM + 2 * 13 == 218


def test_silence_has_the_same_width_as_sound():
    silent = A.audio_features(np.zeros(6 * SR, np.float32), SR, AudioConfig(n_mfcc=13))
    assert silent["vectors"].shape == (0, A.vector_dim(13))


def test_more_mfccs_than_mel_bands_is_a_config_error():
    """A DCT of MEL_BANDS bands has no more coefficients: the config says so at load, before a long
    track's streamed path would fail on it."""
    from astradup.config import load_config
    from astradup.errors import ConfigError

    assert load_config(None, {"audio": {"n_mfcc": MEL_BANDS}}).audio.n_mfcc == MEL_BANDS
    with pytest.raises(ConfigError, match="audio.n_mfcc = 41: must be between 1 and 40"):
        load_config(None, {"audio": {"n_mfcc": MEL_BANDS + 1}})
