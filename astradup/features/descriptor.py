"""The frame descriptor: the embedder's output projected on its top singular vectors.

SSCD's 512 dimensions are far from equally used: 256 singular vectors (uncentred, fitted on dev10)
keep 0.95 of a frame's norm on unseen dev media, and every stored frame row (Parquet int8) halves
(index 3.7 -> 2.8 MB per hour). The cost, measured (docs/performance.md): dev20 unchanged, dev40
LCT 0.978 -> 0.967 and one audio-only copy lost, because re-normalising the projected rows lifts
the similarity of unrelated frames (0.07 -> 0.12 on synthetic ones). So it is an option
(``embedder.pca_dims``), off by default. Because the basis is one uncentred SVD, its first k
columns are the best k-d map for any k, which is also how the Milvus copy's 32-d basis relates to
this one (store/projection.py composes them).

Projected rows are L2-normalised again, so the embedder contract (unit rows, IP = cosine) holds.
"""
from __future__ import annotations

import logging

import numpy as np

from astradup.errors import ConfigError
from astradup.features.basis import project_rows, read_fit

log = logging.getLogger(__name__)


def load_basis(setting: str, dims: int, *, kind: str, model: str, full_dim: int) -> np.ndarray | None:
    """[full_dim, dims] basis for the configured model, or None to keep the full output.

    A basis fitted for another model would map unrelated vectors together, so it is not used (the
    log says so); asking for more dims than were fitted, or a file without a descriptor basis
    when the model matches, is a ConfigError.
    """
    if dims <= 0 or dims >= full_dim:
        return None
    path, fit = read_fit(setting or "builtin", "embedder.pca_file")
    fitted_kind, fitted_model, basis = fit["kind"], fit["model"], fit["descriptor"]
    if (fitted_kind, fitted_model) != (kind, model):
        log.info("embedder.pca_file %s was fitted for %s/%s, not %s/%s: frame vectors are kept whole",
                 path, fitted_kind, fitted_model, kind, model)
        return None
    if basis is None:
        raise ConfigError(f"embedder.pca_file {path} has no descriptor basis: refit it with "
                          "scripts/fit_projection.py, or set embedder.pca_dims: 0")
    if basis.shape[0] != full_dim or basis.shape[1] < dims:
        raise ConfigError(f"embedder.pca_file {path}: descriptor basis is {basis.shape[0]}x{basis.shape[1]}, "
                          f"need {full_dim}x{dims} (embedder.pca_dims)")
    return np.ascontiguousarray(basis[:, :dims], np.float32)


class ReducedEmbedder:
    """A FrameEmbedder whose rows are ``base``'s projected on ``basis`` (see the module doc)."""

    def __init__(self, base, basis: np.ndarray) -> None:
        self.base = base
        self.basis = basis
        self.dim = int(basis.shape[1])
        self.name = f"{base.name}+pca{self.dim}"

    def embed(self, frames: np.ndarray) -> np.ndarray:
        return project_rows(self.base.embed(frames), self.basis)

    def __getattr__(self, name: str):
        return getattr(self.base, name)


def basis_within(setting: str, max_dims: int, *, kind: str, model: str, full_dim: int) -> np.ndarray | None:
    """The descriptor basis cut to at most ``max_dims`` columns, for a file with a width limit
    (VSC22 descriptors: 512 dimensions, frame and audio parts together). None when ``full_dim``
    fits already, or no basis was fitted for this model and width: the caller keeps the full rows
    (and says the limit is passed). Frames projected on it to 256 lose nothing measurable on the
    descriptor track (dev40 0.943 -> 0.942, hard 0.842 -> 0.841; match/joint_descriptor.py)."""
    if full_dim <= max_dims or max_dims < 1:
        return None
    _, fit = read_fit(setting or "builtin", "embedder.pca_file")
    basis = fit["descriptor"]
    if basis is None or basis.shape[0] != full_dim or (fit["kind"], fit["model"]) != (kind, model):
        return None
    return np.ascontiguousarray(basis[:, :min(max_dims, basis.shape[1])], np.float32)
