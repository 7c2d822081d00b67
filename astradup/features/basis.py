"""The fitted bases of a projection file (scripts/fit_projection.py) and the one way to apply them.

A basis is the top right singular vectors of uncentred unit embeddings. Two rooms use one: the
frame descriptor (features/descriptor.py, ``embedder.pca_dims``) and the Milvus copy
(store/projection.py, ``vectors.projection``), so the file, its checks and ``project_rows`` live
here, on the features floor, where both can import them.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from astradup.errors import ConfigError
from astradup.features.unit_rows import l2_normalise

BUILTIN = Path(__file__).resolve().parent.parent / "data" / "projection.npz"


# Tail shares at which unrelated-row similarity quantiles are kept (``tail_table``).
TAIL_PROBS = np.geomspace(0.2, 1e-4, 34)


def project_rows(x: np.ndarray, basis: np.ndarray | None) -> np.ndarray:
    """Rows of ``x`` times ``basis``, re-normalised (a zero row stays zero); ``x`` when None."""
    x = np.asarray(x, np.float32)
    if basis is None or len(x) == 0:
        return x if basis is None else np.zeros((0, basis.shape[1]), np.float32)
    return l2_normalise(x @ basis)


def save(path: str | Path, frames: np.ndarray | None, audio: np.ndarray | None, info: dict[str, Any],
         descriptor: np.ndarray | None = None, frame_tails: np.ndarray | None = None,
         audio_tails: np.ndarray | None = None) -> None:
    """Write bases + what they were fitted for (model, dims) so a mismatch is caught on load."""
    arrays: dict[str, Any] = {"info": np.array(repr(sorted(info.items())))}
    for name, t in (("frame_tails", frame_tails), ("audio_tails", audio_tails)):
        if t is not None:
            arrays[name] = np.asarray(t, np.float32)
    if descriptor is not None:
        arrays["descriptor"] = descriptor.astype(np.float32)
    if frames is not None:
        arrays["frames"] = frames.astype(np.float32)
    if audio is not None:
        arrays["audio"] = audio.astype(np.float32)
    for k, v in info.items():
        arrays[f"info_{k}"] = np.array(v)
    np.savez_compressed(path, **arrays)


def read_fit(setting: str, key: str) -> tuple[Path, dict[str, Any]]:
    """(path, contents) of a file written by :func:`save`: ``builtin`` or a path, named by the
    config ``key`` when missing. Contents: the "frames", "audio" and "descriptor" bases (None when
    absent) and the "kind" / "model" they were fitted for ("" when unknown)."""
    path = BUILTIN if setting.strip().lower() == "builtin" else Path(setting)
    if not path.exists():
        raise ConfigError(f"{key}: file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            fit: dict[str, Any] = {k: (z[k] if k in z else None)
                                   for k in ("frames", "audio", "descriptor", "frame_tails", "audio_tails")}
            fit.update({k: (str(z[f"info_{k}"]) if f"info_{k}" in z else "") for k in ("kind", "model")})
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ConfigError(f"{key} {path}: not a projection file written by fit_projection.py "
                          f"({type(e).__name__})") from None
    for name in ("frames", "audio", "descriptor", "frame_tails", "audio_tails"):
        problem = _array_problem(name, fit[name])
        if problem:
            raise ConfigError(f"{key} {path}: {name} {problem}")
    return path, fit


def _array_problem(name: str, a: np.ndarray | None) -> str:
    """Why an array read from a projection file cannot be used ('' when it can): a user's file is
    checked here, at load, so a bad one fails with its name rather than at search time."""
    if a is None:
        return ""
    if a.dtype.kind not in "fiu" or a.ndim != 2 or 0 in a.shape:
        return f"must be a non-empty 2-d numeric array, got {a.dtype} {a.shape}"
    if not np.isfinite(a).all():
        return "holds NaN or infinite values"
    if name.endswith("_tails"):
        if a.shape != (2, len(TAIL_PROBS)):
            return f"must have shape (2, {len(TAIL_PROBS)}), got {a.shape}"
        if np.abs(a).max() > 1.0 + 1e-3:
            return "holds similarities outside [-1, 1]"
        if (np.diff(a, axis=1) < -1e-6).any():
            return "must rise along each row (quantiles of ever rarer shares)"
    return ""
