"""The frame embedder as its own Serve deployment, and the proxy that lets the search deployment
use it wherever the code expects a local embedder.

Embedding is the only step that wants a GPU; keeping it in its own deployment lets it scale (and
sit on GPU nodes) independently of search, which must stay a single replica on a Milvus Lite file.
"""
from __future__ import annotations

import numpy as np
from ray import serve

from astradup.config import EmbedderConfig

CHUNK_FRAMES = 64  # frames per embedder request: a long query fans out over several replicas


@serve.deployment(name="FrameEmbedder", max_ongoing_requests=4)
class FrameEmbedder:
    def __init__(self, ecfg: EmbedderConfig) -> None:
        from astradup.features.embedder import get_embedder

        self.model = get_embedder(ecfg)

    def info(self) -> dict:
        return {"dim": int(self.model.dim), "name": str(self.model.name)}

    def embed(self, frames: np.ndarray) -> np.ndarray:
        return self.model.embed(frames)


class RemoteEmbedder:
    """``dim``/``name``/``embed`` (the FrameEmbedder contract) answered by the embedder deployment.

    ``embed`` blocks on the handle, so it must run off the replica's event loop: Serve runs sync
    deployment methods in a thread pool, which is where Searcher calls it from.
    """

    def __init__(self, handle, dim: int, name: str, chunk: int = CHUNK_FRAMES) -> None:
        self.handle = handle
        self.dim = dim
        self.name = name
        self.chunk = chunk

    def embed(self, frames: np.ndarray) -> np.ndarray:
        frames = np.ascontiguousarray(frames)
        if len(frames) == 0:
            return np.zeros((0, self.dim), np.float32)
        # All chunks are sent before any result is awaited, so they run in parallel.
        pending = [self.handle.embed.remote(frames[i:i + self.chunk]) for i in range(0, len(frames), self.chunk)]
        return np.concatenate([np.asarray(r.result(), np.float32) for r in pending], axis=0)
