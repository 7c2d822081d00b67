"""The line search's fast paths give what the plain tables gave: ``line_offset.dense_offsets`` (offsets
dense enough over a span) and ``motion.nearest`` (a source frame per line point), on random input
with exact hits and ties; ``motion.lines_motion`` (every line's step cosines from one matrix of
step x frame products) gives what the definition gives."""
from __future__ import annotations

import numpy as np
import pytest

from astradup.match.line_offset import dense_offsets as _dense_offsets
from astradup.match.motion import _nearest_any, nearest, lines_motion, query_steps, step_products


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
        assert np.array_equal(nearest(ts, x), _nearest_any(ts, x))


def _reference_motion(s_emb, tq, ts, steps, lag, slope, offsets, min_motion=0.15):
    """One line at a time, straight from the definition: the step cosines of the moving steps."""
    i, dq = steps
    means, counts = np.full(len(offsets), np.nan), np.zeros(len(offsets), np.int64)
    for k, off in enumerate(offsets):
        j = np.abs(ts[None, :] - (slope * tq[i] + off)[:, None]).argmin(axis=1)
        j2 = np.abs(ts[None, :] - (slope * tq[i + lag] + off)[:, None]).argmin(axis=1)
        ds = s_emb[j2] - s_emb[j]
        nq, ns = np.linalg.norm(dq, axis=1), np.linalg.norm(ds, axis=1)
        moving = (nq > min_motion) & (ns > min_motion)
        if moving.any():
            means[k] = np.mean(np.sum(dq[moving] * ds[moving], axis=1) / (nq[moving] * ns[moving]))
            counts[k] = moving.sum()
    return means, counts


@pytest.mark.parametrize("seed", range(12))
def test_lines_motion_with_step_products_is_the_definition(seed):
    rng = np.random.default_rng(seed)
    n_s, n_q, d = int(rng.integers(4, 120)), int(rng.integers(5, 120)), 48
    walk = lambda n: np.cumsum(rng.normal(size=(n, d)), axis=0).astype(np.float32)  # noqa: E731
    s_emb = walk(n_s)
    s_emb /= np.linalg.norm(s_emb, axis=1, keepdims=True)
    q_emb = walk(n_q)
    q_emb /= np.linalg.norm(q_emb, axis=1, keepdims=True)
    q_emb[:: int(rng.integers(2, 5))] = q_emb[0]  # some steps without visible change
    tq, ts = np.arange(n_q, dtype=np.float64), np.arange(n_s, dtype=np.float64) * float(rng.choice([0.5, 1.0]))
    steps = query_steps(q_emb, tq, 0.0, float(n_q), 3)
    offsets = np.concatenate([rng.uniform(-30, 30, int(rng.integers(1, 300))), [0.0, 0.0]])  # one line twice
    slope = float(rng.choice([0.8, 1.0, 1.25]))
    ref_m, ref_n = _reference_motion(s_emb, tq, ts, steps, 3, slope, offsets)
    for kwargs in ({}, {"products": step_products(steps, s_emb)}, {"chunk": 7}):
        m, n = lines_motion(s_emb, tq, ts, steps, 3, slope, offsets, **kwargs)
        assert np.array_equal(n, ref_n)
        assert np.array_equal(np.isnan(m), np.isnan(ref_m))
        assert np.allclose(m[~np.isnan(m)], ref_m[~np.isnan(ref_m)], atol=1e-5)
        assert m[-2] == m[-1] or (np.isnan(m[-2]) and np.isnan(m[-1]))  # the same frames give the same mean
    one_m, one_n = lines_motion(s_emb, tq, ts, steps, 3, slope, offsets[:1])  # the single-line path
    assert one_n[0] == ref_n[0] and (np.isnan(one_m[0]) == np.isnan(ref_m[0]))
    assert np.isnan(one_m[0]) or abs(one_m[0] - ref_m[0]) < 1e-5
