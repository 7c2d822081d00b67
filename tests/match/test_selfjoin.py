"""The batched self-join's numeric core (astradup/match/selfjoin.py): exact in-memory KNN without
self hits, merging with the server's hits, and the candidate floors."""
from __future__ import annotations

import numpy as np

from astradup.config import ScoreConfig, SegmentConfig
from astradup.match.selfjoin import (PRUNE_MARGIN, TOP_K_BLOCK, Floors, Rows, best_per_video, could_match, exact_floors,
                                     exact_knn, floors, merge_hits, prune, top_k)


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_knn_is_brute_force_over_the_other_videos_only():
    rng = np.random.default_rng(0)
    parts = [(f"v{i}", _unit(rng.normal(size=(n, 8))), np.arange(n, dtype=float)) for i, n in enumerate((5, 7, 0, 4))]
    index = Rows.stack(parts, 8)
    assert len(index.vectors) == 16 and set(index.owners) == {"v0", "v1", "v3"}  # v2 has no rows
    q, owners = index.vectors, index.owners
    hits = exact_knn(q, owners, index, k=3)
    for i, row in enumerate(hits):
        sims = q[i] @ index.vectors.T
        others = [j for j in range(len(sims)) if index.owners[j] != owners[i]]
        want = sorted(others, key=lambda j: -sims[j])[:3]
        assert [(h[0], h[1]) for h in row] == [(index.owners[j], index.times[j]) for j in want]
        assert all(h[0] != owners[i] for h in row)
        assert np.allclose([h[2] for h in row], sims[want], atol=1e-6)


def test_exact_knn_chunks_give_the_same_answer(monkeypatch):
    import astradup.match.selfjoin as sj

    rng = np.random.default_rng(1)
    index = Rows.stack([(f"v{i}", _unit(rng.normal(size=(30, 4))), np.arange(30.0)) for i in range(4)], 4)
    whole = exact_knn(index.vectors, index.owners, index, k=5)
    monkeypatch.setattr(sj, "CHUNK_CELLS", 7 * len(index.vectors))  # 7 query rows per block
    chunked = exact_knn(index.vectors, index.owners, index, k=5)
    assert [[h[:2] for h in row] for row in chunked] == [[h[:2] for h in row] for row in whole]
    assert np.allclose([h[2] for row in chunked for h in row], [h[2] for row in whole for h in row], atol=1e-6)


def test_top_k_through_block_maxima_is_a_full_sort_with_ties_by_column():
    """The block path (rows wider than 4k blocks) against a stable sort of every column: values drawn
    from a few levels so that ties are everywhere, masked (-inf) stretches, widths that leave a short
    last block, and k from 1 to past the block count."""
    rng = np.random.default_rng(3)
    for n in (TOP_K_BLOCK * 4 * 3 + 1, 1000, 1024, 2053):
        for k in (1, 3, 10, 40):
            sim = rng.integers(0, 6, size=(40, n)).astype(np.float32) / 5
            sim[5, :] = -np.inf  # a row with nothing left (its own video everywhere)
            sim[6, : n - 2] = -np.inf  # only the last two columns, in the short last block
            sim[7, 100:] = -np.inf
            cols, vals = top_k(sim, k)
            want = np.argsort(-sim, axis=1, kind="stable")[:, :k]
            finite = np.isfinite(np.take_along_axis(sim, want, axis=1))
            assert np.array_equal(np.where(finite, cols, -1), np.where(finite, want, -1)), (n, k)
            assert np.array_equal(vals, np.take_along_axis(sim, want, axis=1)), (n, k)
            assert ((cols >= 0) & (cols < n)).all()


def test_exact_knn_ties_go_to_the_earlier_row_on_the_block_path():
    """Exact copies (the same vector in several videos) tie: which rows come back must not depend on
    how the selection is done, so hits are reproducible between runs and between the two paths."""
    rng = np.random.default_rng(4)
    # four entries of +-0.5 per row: every product with a copy is exactly 1.0 whatever order a GEMM
    # kernel sums in (a float32 GEMM may put random vectors' products with copies 1 ulp apart by column)
    base = np.zeros((20, 8), np.float32)
    for row in base:
        row[rng.choice(8, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
    parts = [(f"v{i:02d}", base if i % 3 == 0 else _unit(rng.normal(size=(20, 8))), np.arange(20.0)) for i in range(60)]
    index = Rows.stack(parts, 8)
    hits = exact_knn(base, np.full(20, "v00", dtype=object), index, k=6)
    for row in hits:
        assert [h[0] for h in row] == ["v03", "v06", "v09", "v12", "v15", "v18"]
        assert all(abs(h[2] - 1.0) < 1e-5 for h in row)


def test_a_video_alone_has_no_neighbours_in_its_batch():
    index = Rows.stack([("only", _unit(np.ones((3, 2))), np.arange(3.0))], 2)
    assert exact_knn(index.vectors, index.owners, index, k=4) == [[], [], []]
    assert exact_knn(np.zeros((0, 2), np.float32), np.zeros(0, dtype=object), index, k=4) == []


def test_merge_keeps_the_k_best_of_both_sides_and_best_per_video():
    remote = [[("a", 0.0, 0.9), ("b", 1.0, 0.5)], []]
    local = [[("c", 2.0, 0.7)], [("c", 3.0, 0.4)]]
    merged = merge_hits(remote, local, k=2)
    assert merged == [[("a", 0.0, 0.9), ("c", 2.0, 0.7)], [("c", 3.0, 0.4)]]
    assert best_per_video(merged + [[("c", 9.0, 0.8)]]) == {"a": 0.9, "c": 0.8}


def test_floors_sit_a_margin_below_the_exact_ones_and_prune_keeps_order():
    score, seg = ScoreConfig(), SegmentConfig()
    vis, aud = floors(score, seg)
    bar = exact_floors(score, seg)
    assert (vis, aud) == (bar.visual_hit - PRUNE_MARGIN, bar.audio - PRUNE_MARGIN)
    assert bar.coverage == score.emb_lo
    assert bar.cell == seg.visual_lo + seg.cell_threshold * (seg.visual_hi - seg.visual_lo)
    assert bar.cells == 2  # 3 s at 50 % density, 1 fps
    assert exact_floors(score, seg, fps=4.0).cells == 6
    assert bar.audio <= score.audio_vec_lo and bar.audio < seg.audio_lo + seg.cell_threshold * (seg.audio_hi - seg.audio_lo)
    kept = prune(["x", "y", "z", "w"], {"x": vis, "y": vis - 0.01, "w": 0.99}, {"z": aud, "y": aud - 0.01},
                 vis, aud)
    assert kept == ["x", "z", "w"]


def test_below_the_coverage_floor_no_fusion_reaches_similar():
    """The bound exact_floors rests on: embeddings calibrated to 0, pHash perfect, audio and
    metadata perfect, still under ``similar``; with no audio (weights redistributed) too."""
    from astradup.config import FusionConfig
    from astradup.match.fusion import fuse
    from astradup.match.scoring import _agree, calibrate

    score, fusion = ScoreConfig(), FusionConfig()
    emb = calibrate(exact_floors(score, SegmentConfig()).coverage - 1e-6, score.emb_lo, score.emb_hi)
    visual = _agree(emb, 1.0)
    for audio in (1.0, None):
        assert fuse({"visual": visual, "audio": audio, "metadata": 1.0}, fusion).score < fusion.similar


def test_could_match_needs_coverage_or_enough_cells_or_an_audio_pair():
    bar = Floors(coverage=0.35, cell=0.55, cells=2, audio=0.55)
    none = np.zeros((0, 4), np.float32)
    q = np.array([[0.9, 0.436, 0, 0], [0.0, 0.0, 1.0, 0.0]], np.float32)
    s = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]], np.float32)
    # q0 best 0.9 (a cell), q1 best 0 -> cells 1 < 2; coverage min(mean(0.9, 0), ...) = 0.45 >= 0.35 -> possible
    assert could_match(q, s, none, none, bar)
    assert not could_match(q, s, none, none, Floors(0.5, 0.55, 2, 0.55))  # neither coverage nor cells
    assert could_match(q, s, none, none, Floors(0.5, 0.55, 1, 0.55))  # one cell is enough when one is needed
    assert could_match(q, s, none, none, Floors(0.5, 0.55, 2, 0.55), q_mirror=s)  # the mirror matches whole
    a = np.eye(3, dtype=np.float32)
    assert could_match(q, s, a, a, Floors(0.5, 0.95, 2, 0.99))  # an audio window pair at 1.0
    assert not could_match(q, s, a, none, Floors(0.5, 0.95, 2, 0.99))
    assert could_match(np.zeros((0, 4), np.float32), s, none, none, bar)  # nothing to decide on
