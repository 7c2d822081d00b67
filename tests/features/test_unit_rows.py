"""features.unit_rows.l2_normalise: the one L2 normalisation, on the rows its callers meet."""
from __future__ import annotations

import numpy as np

from astradup.features.unit_rows import l2_normalise


def test_rows_become_unit_length_in_their_own_dtype():
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x = rng.normal(size=(20, 7)).astype(dtype)
        y = l2_normalise(x)
        assert y.dtype == dtype and y.shape == x.shape
        assert np.allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-6)
        assert np.array_equal(y, x / np.linalg.norm(x, axis=1, keepdims=True))  # the plain division


def test_zero_and_non_finite_rows_become_zero_rows_never_nan():
    x = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [np.nan, 1.0, 0.0], [np.inf, 0.0, 1.0]], np.float32)
    y = l2_normalise(x)
    assert np.isfinite(y).all()
    assert np.array_equal(y[0], [0, 0, 0]) and np.allclose(y[1], [0.6, 0.8, 0.0])
    assert np.array_equal(y[2], [0, 0, 0]) and np.array_equal(y[3], [0, 0, 0])


def test_integer_rows_are_normalised_in_float32_and_empty_input_is_fine():
    q = np.array([[127, 0], [0, -5], [0, 0]], np.int8)
    y = l2_normalise(q)
    assert y.dtype == np.float32 and np.array_equal(y, [[1, 0], [0, -1], [0, 0]])
    assert l2_normalise(np.zeros((0, 4), np.float32)).shape == (0, 4)


def test_input_is_left_alone():
    x = np.array([[3.0, 4.0]])
    l2_normalise(x)
    assert np.array_equal(x, [[3.0, 4.0]])
