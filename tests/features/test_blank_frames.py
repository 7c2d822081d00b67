"""Which decoded frames carry no visual evidence (features/extract.py ``blank_frames``)."""
from __future__ import annotations

import numpy as np

from astradup.features.extract import blank_frames


def _frame(grey: np.ndarray) -> np.ndarray:
    g = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)


def test_black_flat_and_faded_frames_are_blank_and_a_dark_night_scene_is_not():
    rng = np.random.default_rng(0)
    h, w = 90, 160
    yy, xx = np.mgrid[0:h, 0:w]
    black = _frame(rng.normal(1.0, 0.8, (h, w)))  # black with encoder noise
    card = _frame(np.full((h, w), 128.0) + rng.normal(0, 0.5, (h, w)))  # a flat grey card
    scene = 100 + 60 * np.sin(xx / 9.0) * np.cos(yy / 7.0)  # a textured picture, std ~30
    faded = _frame(8 + (scene - 100) * 0.03)  # the dark end of a fade to black: std ~1
    # a night scene: dark (mean ~12) and low in contrast, but with structure (std ~5.5)
    night = _frame(12 + 11 * np.sin(xx / 11.0) * np.cos(yy / 13.0) + rng.normal(0, 0.7, (h, w)))
    assert 5.0 < float(night[:, :, 0].std()) < 6.0
    frames = np.stack([black, card, faded, night, _frame(scene)])
    assert blank_frames(frames) == [0, 1, 2]
    assert blank_frames(frames[:0]) == []
