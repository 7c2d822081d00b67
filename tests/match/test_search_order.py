"""``Searcher.score``'s order, on hand-made features (no index): what a user must see, a copied
segment among them, comes before videos that only fuse higher, so ``top`` cannot cut it off."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from astradup.config import load_config
from astradup.records import VideoFeatures
from astradup.search import Query, Searcher

RNG = np.random.default_rng(3)
META = {"width": 640, "height": 360, "fps": 25.0}


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def video(vid: str, emb: np.ndarray) -> VideoFeatures:
    t = len(emb)
    return VideoFeatures(vid, f"/v/{vid}.mp4", np.arange(t, dtype=np.float32) + 0.5, emb,
                         RNG.integers(0, 256, (t, 32), dtype=np.uint8), np.zeros((0, 2), np.float32),
                         np.zeros((0, 4), np.float32), np.zeros(0, np.uint32), 0.0,
                         {"duration": float(t), **META})


def test_an_excerpt_copy_ranks_before_videos_that_only_fuse_higher():
    """A 10 s excerpt of ``src`` inside a 120 s query fuses near 0 (it covers a twelfth of the
    query); twelve unrelated videos of the query's own length, size and rate fuse higher on
    metadata alone. Ranked by fused score, the copy came 13th and the default ``top`` dropped it."""
    cfg = load_config(None, {})
    q = unit(RNG.normal(size=(120, 256)))
    src = unit(RNG.normal(size=(30, 256)))
    src[10:20] = unit(q[40:50] + 0.05 * RNG.normal(size=(10, 256)))
    feats = {"src": video("src", src), **{f"other{i:02d}": video(f"other{i:02d}", unit(RNG.normal(size=(120, 256))))
                                          for i in range(12)}}
    searcher = Searcher(cfg, SimpleNamespace())
    ranked = searcher.score(Query(video("q", q), None), list(feats), features=feats)
    copy = next(m for m in ranked if m.source_id == "src")
    assert copy.segments and (copy.segments[0].q_start, copy.segments[0].s_start) == (40.0, 10.0)
    assert min(m.fused for m in ranked if m.source_id != "src") > copy.fused  # the case in question
    assert ranked[0].source_id == "src" and ranked[0].reportable
    rest = [m.fused for m in ranked[1:]]
    assert rest == sorted(rest, reverse=True) and not any(m.reportable for m in ranked[1:])
