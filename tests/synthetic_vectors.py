"""Synthetic feature vectors for tests that build a library without media: unit vectors that drift
like footage, noisy copies of them, and a stand-in embedder that only reports its size."""
from __future__ import annotations

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def walk(rng: np.random.Generator, n: int, dim: int, keep: float = 0.85) -> np.ndarray:
    """Unit vectors that drift like footage does: each close to the one before (``keep``)."""
    out = [rng.normal(size=dim)]
    for _ in range(n - 1):
        out.append(keep * out[-1] + np.sqrt(1 - keep ** 2) * rng.normal(size=dim))
    return unit(np.asarray(out))


def noisy(rng: np.random.Generator, x: np.ndarray, amount: float) -> np.ndarray:
    """``x`` as a re-encode leaves it: each vector moved by ``amount`` of noise."""
    return unit(x + amount * rng.normal(size=x.shape) / np.sqrt(x.shape[-1]))


class SizeOnlyEmbedder:
    """The catalog asks its embedder for the frame size only: nothing is embedded here."""

    def __init__(self, dim: int) -> None:
        self.dim, self.name = dim, "synthetic"
