"""The line search's fast paths give what the plain tables gave: ``align._dense_offsets`` (offsets
dense enough over a span) and ``motion._nearest`` (a source frame per line point), on random input
with exact hits and ties."""
from __future__ import annotations

import numpy as np
import pytest

from astradup.match.align import _dense_offsets
from astradup.match.motion import _nearest, _nearest_any


def _table_offsets(resid, step, row_of, n_rows, min_density):
    """The cells x offsets table the fast path replaced."""
    offsets = np.unique(np.round(resid / step)) * step
    lines, cells = np.nonzero(np.abs(resid[None, :] - offsets[:, None]) <= step)
    covered = np.zeros((len(offsets), n_rows), bool)
    covered[lines, row_of[cells]] = True
    return offsets[covered.sum(axis=1) >= min_density * n_rows]


@pytest.mark.parametrize("seed", range(40))
def test_dense_offsets_match_the_table(seed):
    rng = np.random.default_rng(seed)
    n_rows = int(rng.integers(2, 60))
    n_cells = int(rng.integers(2, 400))
    row_of = rng.integers(0, n_rows, n_cells)
    step = float(rng.choice([0.5, 1.5 / 3, 0.3]))
    # residuals on a few lines plus noise, some exactly half-way between two offsets
    resid = rng.choice([-3.0, 0.0, 7.25], n_cells) + rng.normal(0, 0.4, n_cells)
    resid[: n_cells // 5] = np.round(resid[: n_cells // 5] / step) * step + step / 2
    density = float(rng.choice([0.1, 0.5, 0.9]))
    assert np.array_equal(_dense_offsets(resid, step, row_of, n_rows, density),
                          _table_offsets(resid, step, row_of, n_rows, density))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nearest_is_argmin_with_its_tie_rule(dtype):
    rng = np.random.default_rng(3)
    for _ in range(100):
        ts = np.unique(np.round(np.cumsum(rng.uniform(0.1, 2.0, int(rng.integers(2, 40)))) * 2) / 2).astype(dtype)
        if len(ts) < 2:
            continue
        x = rng.uniform(-5, float(ts[-1]) + 5, (3, 20))
        x[0, : min(20, len(ts))] = ts[:20]  # exact hits
        mids = (ts[1:] + ts[:-1]) / 2
        x[1, : min(20, len(mids))] = mids[:20]  # exact ties: the lower neighbour, as argmin's first
        assert np.array_equal(_nearest(ts, x), _nearest_any(ts, x))
