"""match/products.py: a pair's frame products made once and handed to every scoring stage give what
each stage computes on its own (backgrounds, common mask, pre-check, evidence, segments), with a
mirrored query, blank and common frames."""
from __future__ import annotations

import numpy as np

from astradup.config import ScoreConfig, SegmentConfig
from astradup.match.common import CommonSegment, mask_pair
from astradup.match.products import all_products, frame_products
from astradup.match.query_rows import could_match_rows
from astradup.match.scoring import backgrounds, pair_evidence, pair_segments
from astradup.match.selfjoin import Floors
from astradup.records import VideoFeatures

RNG = np.random.default_rng(5)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def video(vid: str, emb: np.ndarray, audio: np.ndarray, **meta) -> VideoFeatures:
    t, w = len(emb), len(audio)
    windows = np.stack([np.arange(w), np.arange(w) + 2.0], axis=1).astype(np.float32)
    return VideoFeatures(vid, f"/v/{vid}.mp4", np.arange(t, dtype=np.float32) + 0.5, emb,
                         RNG.integers(0, 256, (t, 32), dtype=np.uint8), windows, audio,
                         np.zeros(0, np.uint32), 8.0, {"duration": float(t), **meta})


def corpus():
    walk = unit(np.cumsum(RNG.normal(size=(60, 16)), axis=0))
    audio = unit(RNG.normal(size=(58, 8)))
    q = video("q", walk[10:40] + 0.05 * unit(RNG.normal(size=(30, 16))), audio[10:38], blank_frames=[3])
    mirror = unit(walk[10:40][:, ::-1].copy())
    flipped = unit(np.concatenate([unit(RNG.normal(size=(8, 16))), mirror[5:25]]))  # a flipped copy of q[5:25]
    cands = {"src": video("src", walk, audio), "flip": video("flip", flipped, unit(RNG.normal(size=(20, 8)))),
             **{f"o{i}": video(f"o{i}", unit(RNG.normal(size=(int(RNG.integers(5, 50)), 16))),
                               unit(RNG.normal(size=(20, 8)))) for i in range(6)}}
    return q, mirror, cands


def test_every_stage_reads_the_products_as_it_computes_them():
    q, mirror, cands = corpus()
    seg, score = SegmentConfig(), ScoreConfig()
    kept = all_products(q, cands, mirror)
    assert set(kept) == set(cands) and kept["src"].mirror is not None
    assert backgrounds(q, cands, seg, mirror, kept).keys() == cands.keys()
    for v, bg in backgrounds(q, cands, seg, mirror, kept).items():
        alone = backgrounds(q, cands, seg, mirror)[v]
        assert (bg is None and alone is None) or np.array_equal(bg, alone)
    common = [CommonSegment(0.0, 4.0, 9, ("visual",))]
    for v, s0 in cands.items():
        p = kept[v]
        qf, s = mask_pair(q, s0, common, 0.5, 0.5, p.plain)
        qf2, s2 = mask_pair(q, s0, common, 0.5, 0.5)
        assert qf.meta == qf2.meta and s.meta == s2.meta
        for bar in (Floors(0.3, 0.5, 2, 0.5), Floors(0.9, 0.99, 5, 1.1)):
            assert could_match_rows(qf, s, mirror, None, bar, p) == could_match_rows(qf, s, mirror, None, bar)
            # every row kept (nothing blank or common): the products are read as they are
            assert could_match_rows(q, s0, mirror, None, bar, p) == could_match_rows(q, s0, mirror, None, bar)
        assert pair_evidence(qf, s, score, mirror, p) == pair_evidence(qf, s, score, mirror)
        assert pair_segments(qf, s, seg, mirror, None, None, p) == pair_segments(qf, s, seg, mirror)
    assert pair_segments(q, cands["src"], seg, mirror, None, None, kept["src"])  # the copy is found
    assert pair_evidence(q, cands["flip"], score, mirror, kept["flip"]).mirrored  # the flipped one through the mirror


def test_products_are_not_kept_past_their_budget():
    q, mirror, cands = corpus()
    cells = len(q.embeddings) * sum(len(s.embeddings) for s in cands.values())
    assert len(all_products(q, cands, None, keep_cells=cells)) == len(cands)
    assert all_products(q, cands, mirror, keep_cells=cells) == {}  # the mirror doubles them
    empty = video("e", np.zeros((0, 16), np.float32), np.zeros((0, 8), np.float32))
    assert frame_products(q, empty) is None
    assert frame_products(q, video("w", unit(RNG.normal(size=(4, 12))), np.zeros((0, 8), np.float32))) is None
