"""The look-up tables of the moving-line search (match/motion.StepNorms, match/line_offset._slots)
give exactly what the per-call computations they replace give: every mean, count and offset equal."""
from __future__ import annotations

import numpy as np
import pytest

import astradup.match.line_offset as line_offset
import astradup.match.motion as motion
from astradup.match.motion import StepNorms, lines_motion, query_steps, step_products


def _emb(rng, n: int, d: int = 16) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_step_norms_are_each_pairs_own_norm_on_both_paths(monkeypatch):
    rng = np.random.default_rng(0)
    s = _emb(rng, 40)
    j, j2 = rng.integers(0, 40, (3, 200)), rng.integers(0, 40, (3, 200))
    want = np.linalg.norm(s[j2] - s[j], axis=-1).astype(np.float64)
    few = StepNorms(s)
    assert np.array_equal(few(j[:1, :20], j2[:1, :20]), want[:1, :20]) and few.table is None  # too few for a table
    table = StepNorms(s)
    assert np.array_equal(table(j, j2), want)
    assert table.table is not None
    assert np.array_equal(table(j, j2), want)  # asked again: from the table
    assert np.isfinite(table.table).sum() == len(np.unique(j * 40 + j2))  # each distinct pair computed once
    monkeypatch.setattr(motion, "STEP_NORMS_MAX_CELLS", 10)
    wide = StepNorms(s)
    assert wide.table is None and np.array_equal(wide(j, j2), want)


def test_lines_sharing_a_span_table_across_slopes_score_as_each_alone():
    rng = np.random.default_rng(1)
    q, s = _emb(rng, 120), _emb(rng, 90)
    tq, ts = np.arange(120, dtype=np.float32), np.arange(90, dtype=np.float32) * 0.5
    steps = query_steps(q, tq, 0.0, 120.0, 3)
    products, norms = step_products(steps, s), StepNorms(s)
    for slope in (0.5, 0.8, 1.0, 1.25):
        offsets = rng.uniform(-40, 40, 300)
        shared = lines_motion(s, tq, ts, steps, 3, slope, offsets, products=products, norms=norms, chunk=64)
        alone = lines_motion(s, tq, ts, steps, 3, slope, offsets)
        assert np.array_equal(shared[0], alone[0], equal_nan=True) and np.array_equal(shared[1], alone[1])
    assert (alone[1] > 0).any()  # lines that moved were compared, not only empty ones


@pytest.mark.parametrize("scale", [1.0, 30.0, 2000.0])
def test_dense_offsets_by_look_up_are_those_found_by_search(monkeypatch, scale):
    rng = np.random.default_rng(int(scale))
    cases = []
    for step in (1 / 3, 0.5):
        resid = rng.uniform(-scale, scale, 3000)
        resid[:1000] = np.round(resid[:1000] / step) * step  # cells exactly on an offset
        resid[1000:1500] = (np.round(resid[1000:1500] / step) + 0.5) * step  # halfway between two
        resid[1500:2500] = 7.3 + rng.normal(0, step, 1000)  # a line many rows' cells lie near
        cases.append((resid, step, rng.integers(0, 60, 3000)))
    looked_up = [line_offset.dense_offsets(r, st, rows, 60, 0.2) for r, st, rows in cases]
    monkeypatch.setattr(line_offset, "SLOTS_MAX", 0)
    searched = [line_offset.dense_offsets(r, st, rows, 60, 0.2) for r, st, rows in cases]
    for a, b in zip(looked_up, searched):
        assert np.array_equal(a, b)
    assert sum(len(a) for a in looked_up) > 0


def test_path_score_is_the_sum_a_per_cell_loop_gives_in_first_seen_order():
    from astradup.match.line_offset import path_score

    def loop(t, r):
        best: dict[float, float] = {}
        for a, b in zip(t, r):
            best[a] = max(best.get(a, -1.0), float(b))
        return sum(best.values()), len(best)

    rng = np.random.default_rng(5)
    for trial in range(200):
        n = int(rng.integers(0, 300))
        t = rng.choice(np.arange(0.0, 40.0, 0.5), n).astype(np.float32 if trial % 2 else np.float64)
        r = rng.uniform(-1.5, 1.0, n).astype(np.float32 if trial % 3 else np.float64)
        assert path_score(t, r) == loop(t, r), trial


@pytest.mark.parametrize("grid", ["even", "offset half-seconds", "uneven", "nearly even"])
def test_left_of_is_searchsorted_on_any_increasing_times(grid, monkeypatch):
    from astradup.match.motion import left_of

    monkeypatch.setattr(motion, "LEFT_OF_MIN", 0)  # computed, however few the values

    rng = np.random.default_rng(7)
    n = 300
    ts = {"even": np.arange(n, dtype=np.float32),
          "offset half-seconds": (np.arange(n) * 0.5 + 0.04).astype(np.float32),
          "uneven": np.cumsum(rng.uniform(0.05, 2.0, n)),
          "nearly even": np.arange(n) + rng.normal(0, 1e-6, n)}[grid]
    x = rng.uniform(ts[0] - 3, ts[-1] + 3, (40, 80))
    x[:10] = rng.choice(ts, (10, 80))  # on the times themselves
    x[10:20] = rng.choice((ts[1:] + ts[:-1]) / 2, (10, 80))  # halfway between two
    x[20, :3] = [np.nan, np.inf, -np.inf]
    for xs in (x, x.astype(np.float32)):
        assert np.array_equal(left_of(ts, xs), np.searchsorted(ts, xs, side="left"))


def test_best_per_row_is_the_per_cell_loop_it_replaced():
    from astradup.match.align import best_per_row

    def loop(qi, sj, w, dist):
        best_at: dict[int, tuple[float, int]] = {}
        rank_at: dict[int, float] = {}
        for q, j, wv, d in zip(qi, sj, w, dist):
            key = float(wv) - 0.01 * float(d)
            if key > rank_at.get(int(q), -np.inf):
                rank_at[int(q)], best_at[int(q)] = key, (float(wv), int(j))
        return best_at

    rng = np.random.default_rng(9)
    for trial in range(300):
        n = int(rng.integers(0, 400))
        qi, sj = rng.integers(0, 40, n), rng.integers(0, 90, n)
        # a still shot: many equal weights and distances, so ties must go to the earlier cell
        w = rng.choice([0.5, 1.0], n).astype(np.float32) if trial % 2 else rng.uniform(0, 1, n).astype(np.float32)
        d = rng.choice([0.0, 1.0], n).astype(np.float32) if trial % 3 else rng.uniform(0, 3, n).astype(np.float32)
        if trial % 5 == 0 and n:  # a damaged record's NaN or infinite time: the loop never took such a cell
            d[rng.integers(0, n, max(1, n // 4))] = rng.choice([np.nan, np.inf])
        assert best_per_row(qi, sj, w, d) == loop(qi, sj, w, d), trial


def test_dense_offsets_with_nan_or_infinite_residuals_are_what_the_search_gave(monkeypatch):
    """A damaged record's NaN or infinite time must not turn the look-up into an error: those spans
    take the sorted path, as every span did before the tables."""
    rng = np.random.default_rng(11)
    resid = np.concatenate([7.0 + rng.normal(0, 0.2, 400), rng.uniform(-30, 30, 200)])
    rows = rng.integers(0, 40, len(resid))
    for bad in (np.nan, np.inf, -np.inf):
        r = resid.copy()
        r[::37] = bad
        with np.errstate(invalid="ignore"):  # inf - inf in the distance test, on both paths alike
            looked_up = line_offset.dense_offsets(r, 1 / 3, rows, 40, 0.2)
            with monkeypatch.context() as m:
                m.setattr(line_offset, "SLOTS_MAX", 0)
                searched = line_offset.dense_offsets(r, 1 / 3, rows, 40, 0.2)
        assert np.array_equal(looked_up, searched, equal_nan=True) and len(looked_up)
