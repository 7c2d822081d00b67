"""The index as one object: Parquet shards (the record of every feature and status) + Milvus vectors
(the searchable copy, rebuildable from the shards with ``reindex``).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from astradup.config import Config
from astradup.io.sources import is_remote, storage_options
from astradup.records import STATUS_OK, VideoFeatures


@functools.lru_cache(maxsize=8)
def audio_vector_dim(sample_rate: int, window: float, step: float, n_mfcc: int) -> int:
    """The audio window vector size, read off the feature code itself so the two never disagree."""
    from astradup.config import AudioConfig
    from astradup.features.audio import audio_features

    rng = np.random.default_rng(0)
    pcm = (0.1 * rng.standard_normal(int(sample_rate * (window + 3)))).astype(np.float32)
    cfg = AudioConfig(window=window, step=step, n_mfcc=n_mfcc)
    return int(audio_features(pcm, sample_rate, cfg)["vectors"].shape[1])


class Catalog:
    def __init__(self, cfg: Config, embedder=None) -> None:
        from astradup.store.shards import ShardStore

        self.cfg = cfg
        root = cfg.resolved_shards_dir
        if not is_remote(root):
            Path(root).mkdir(parents=True, exist_ok=True)
        uri = cfg.resolved_milvus_uri
        if "://" not in uri:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        self.shards = ShardStore(root, storage_options(cfg.s3_endpoint) if root.startswith("s3://") else None)
        self._embedder = embedder
        self._vectors = None

    @property
    def embedder(self):
        if self._embedder is None:
            from astradup.features.embedder import get_embedder

            self._embedder = get_embedder(self.cfg.embedder)
        return self._embedder

    @property
    def vectors(self):
        if self._vectors is None:
            from astradup.store.vectors import VectorStore

            a = self.cfg.audio
            self._vectors = VectorStore(
                self.cfg.resolved_milvus_uri, token=self.cfg.milvus_token, prefix=self.cfg.collection_prefix,
                visual_dim=self.embedder.dim,
                audio_dim=audio_vector_dim(self.cfg.decode.sample_rate, a.window, a.step, a.n_mfcc))
        return self._vectors

    def write(self, batch: list[VideoFeatures]) -> None:
        """Vectors first, then the shard with the status rows: a crash in between leaves the batch
        'not done', and the re-run's upsert replaces the vectors instead of duplicating them."""
        if not batch:
            return
        ok = [f for f in batch if f.status == STATUS_OK]
        if ok:
            self.vectors.upsert_many(ok)
        self.shards.write_features(batch)

    def delete(self, video_id: str) -> int | None:
        """Remove a video's vectors and tombstone it; None when the id is not indexed."""
        status = self.shards.latest_status().get(video_id)
        if status is None or status["status"] != STATUS_OK:
            return None
        before = sum(self.vectors.count().values())
        self.vectors.delete_video(video_id)
        self.shards.mark_deleted(video_id)
        return before - sum(self.vectors.count().values())

    def reindex(self) -> int:
        n = 0
        self.vectors.drop_all()
        for batch in self.shards.iter_features():
            self.vectors.upsert_many(batch)
            n += len(batch)
        return n

    def stats(self) -> dict:
        return {"shards": self.shards.stats(), "vectors": self.vectors.count(),
                "milvus_uri": self.cfg.resolved_milvus_uri, "shards_dir": self.cfg.resolved_shards_dir}
