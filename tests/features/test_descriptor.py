"""The frame descriptor (embedder.pca_dims): the shipped basis, its checks, and that the Milvus
copy's projection composed on top of it is the same map as before."""
from __future__ import annotations

import numpy as np
import pytest

from astradup.config import EmbedderConfig, load_config
from astradup.errors import ConfigError
from astradup.features.descriptor import ReducedEmbedder, load_basis, project_rows
from astradup.store.projection import load_projection, save

SSCD = dict(kind="sscd_onnx", model="sscd_distilled", full_dim=512)


def test_builtin_basis_is_orthonormal_and_nested():
    b256 = load_basis("builtin", 256, **SSCD)
    b64 = load_basis("builtin", 64, **SSCD)
    assert b256.shape == (512, 256) and b64.shape == (512, 64)
    assert np.allclose(b256.T @ b256, np.eye(256), atol=1e-4)
    assert np.array_equal(b64, b256[:, :64])  # one SVD: the first k columns are the k-d map


def test_no_basis_for_full_dims_or_another_model():
    assert load_basis("builtin", 0, **SSCD) is None
    assert load_basis("builtin", 512, **SSCD) is None
    assert load_basis("builtin", 256, kind="open_clip", model="ViT-B-32", full_dim=512) is None
    assert load_basis("builtin", 256, kind="sscd_onnx", model="sscd", full_dim=512) is None


def test_bad_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_basis(str(tmp_path / "nope.npz"), 256, **SSCD)
    with pytest.raises(ConfigError, match="pca_dims"):
        load_basis("builtin", 300, **SSCD)
    old = tmp_path / "old.npz"  # a projection file from before descriptors existed
    save(old, np.eye(512, 32, dtype=np.float32), None, {"kind": "sscd_onnx", "model": "sscd_distilled"})
    with pytest.raises(ConfigError, match="no descriptor basis"):
        load_basis(str(old), 256, **SSCD)


class _Fixed:
    """A stand-in model returning given unit rows, whatever the frames."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows, self.dim, self.name = rows, rows.shape[1], "fixed"

    def embed(self, frames: np.ndarray) -> np.ndarray:
        return self.rows[: len(frames)]


def test_milvus_projection_composed_on_the_descriptor_is_the_old_map():
    """Frames reduced to 256 then projected by the composed basis land where the 512-d frames
    projected by the 32-d basis did: the Milvus copy does not move."""
    rng = np.random.default_rng(0)
    b = load_basis("builtin", 256, **SSCD)
    # Realistic rows: mostly inside the fitted subspace, plus a little outside it.
    x = project_rows(rng.normal(size=(50, 256)) @ b.T + 0.05 * rng.normal(size=(50, 512)), np.eye(512, dtype=np.float32))
    old = load_projection("builtin", 1, 1, embedder_kind="sscd_onnx", embedder_model="sscd_distilled",
                          frame_dim=512, audio_dim=218)
    new = load_projection("builtin", 1, 1, embedder_kind="sscd_onnx", embedder_model="sscd_distilled",
                          frame_dim=256, audio_dim=218)
    assert new.frame_basis.shape == (256, 32)
    reduced = ReducedEmbedder(_Fixed(x), b).embed(np.zeros((50, 1, 1, 3), np.uint8))
    assert np.allclose(np.linalg.norm(reduced, axis=1), 1.0, atol=1e-5)
    assert np.allclose(new.query_frames(reduced), old.query_frames(x), atol=1e-4)


def test_pca_256_embedder_hands_on_descriptors_that_score_like_the_full_ones(tmp_path):
    """The real SSCD model with embedder.pca_dims: 256 (the default keeps the full 512); a re-encoded copy's frame
    similarities stay within 0.01 of the full 512-d ones, and unrelated frames stay far below
    the score calibration's floor (emb_lo). These synthetic frames lie further outside the fitted
    subspace (~0.8 of the norm kept) than real footage (0.995 on the fit set), so unrelated
    similarities rise a little here (~0.07 -> ~0.12); dev-benchmark figures are in
    docs/performance.md."""
    from astradup.features.embedder import make_embedder
    from astradup.io.decode import decode_path
    from tests.media import make_copy, make_video

    cfg = load_config(overrides={"embedder": {"pca_dims": 256}})
    emb = make_embedder(cfg.embedder)
    full = make_embedder(EmbedderConfig(**{**cfg.embedder.__dict__, "pca_dims": 0}))
    assert make_embedder(load_config().embedder).dim == 512  # the default
    assert emb.dim == 256 and full.dim == 512 and emb.name.endswith("+pca256")
    a = make_video(tmp_path / "a.mp4", seconds=4, size=(320, 240), source="mandelbrot", seed=1)
    b = make_video(tmp_path / "b.mp4", seconds=4, size=(320, 240), source="life", seed=2)
    c = make_copy(a, tmp_path / "c.mp4", vf="scale=240:180", crf=30)
    fa, fb, fc = (decode_path(str(p), cfg.decode).frames for p in (a, b, c))
    n = min(len(fa), len(fc))
    copy_full = np.diag(full.embed(fa[:n]) @ full.embed(fc[:n]).T)
    copy_red = np.diag(emb.embed(fa[:n]) @ emb.embed(fc[:n]).T)
    assert copy_red.min() > 0.9 and np.abs(copy_red - copy_full).max() < 0.01
    assert (emb.embed(fa) @ emb.embed(fb).T).max() < cfg.score.emb_lo - 0.1


def _features(vid: str, d: int, t: int = 4) -> "VideoFeatures":
    from astradup.records import VideoFeatures

    rng = np.random.default_rng(len(vid) + d)
    e = rng.normal(size=(t, d)).astype(np.float32)
    return VideoFeatures(
        video_id=vid, uri=f"/{vid}.mp4", timestamps=np.arange(t, dtype=np.float32) + 0.5,
        embeddings=e / np.linalg.norm(e, axis=1, keepdims=True),
        phash=rng.integers(0, 256, (t, 32), dtype=np.uint8), audio_windows=np.zeros((0, 2), np.float32),
        audio_vectors=np.zeros((0, 218), np.float32), chromaprint=np.zeros(0, np.uint32), chromaprint_hz=0.0,
        meta={})


def test_an_index_refuses_frame_vectors_of_another_size(tmp_path):
    """An index built with one descriptor size, then written or searched with another (pca_dims
    changed): a ConfigError naming the setting, and nothing written."""
    from astradup.catalog import Catalog
    from astradup.search import Query, Searcher

    cfg = load_config(overrides={"data_dir": str(tmp_path / "data"), "vectors": {"projection": "none"}})
    cat = Catalog(cfg, embedder=_Fixed(np.eye(64, dtype=np.float32)))
    cat.write([_features("a", 64)])
    cat.vectors.close()
    again = Catalog(cfg, embedder=_Fixed(np.eye(32, dtype=np.float32)))
    with pytest.raises(ConfigError, match="pca_dims"):
        again.write([_features("b", 32)])
    assert set(again.shards.latest_status()) == {"a"}
    with pytest.raises(ConfigError, match="pca_dims"):
        Searcher(cfg, again).score(Query(_features("q", 32), None), ["a"])
    with pytest.raises(ConfigError, match="pca_dims"):
        again.reindex()
