"""The index as one object: Parquet shards (the record of every feature and status) + Milvus vectors
(the searchable copy, rebuildable from the shards with ``reindex``).

Several processes may share one Milvus server and one shards root, and threads may search while
another indexes or deletes: vector writes are idempotent upserts, shard files are never
overwritten, and Milvus calls are retried through an outage (``cfg.retry``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import numpy as np

from astradup import telemetry
from astradup.config import Config
from astradup.errors import ConfigError
from astradup.features.audio import vector_dim
from astradup.io.remote import is_remote, scheme_of, storage_options
from astradup.records import STATUS_DELETED, STATUS_OK, VideoFeatures
from astradup.uris import is_lite_uri

DELETE_DONE = "deleted"
DELETE_ALREADY = "already_deleted"
DELETE_NOT_INDEXED = "not_indexed"


class Deletion(NamedTuple):
    """What ``Catalog.remove`` did: ``state`` is one of the DELETE_* values; ``vectors_removed``
    is the row count when this call deleted the video, else None."""

    state: str
    vectors_removed: int | None


class Catalog:
    def __init__(self, cfg: Config, embedder=None) -> None:
        from astradup.store.shards import ShardStore

        self.cfg = cfg
        root = cfg.resolved_shards_dir
        if not is_remote(root):
            Path(root).mkdir(parents=True, exist_ok=True)
        uri = cfg.resolved_milvus_uri
        if is_lite_uri(uri):
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        c = cfg.catalog
        self.shards = ShardStore(root, storage_options(cfg.s3_endpoint) if scheme_of(root) == "s3" else None,
                                 refresh_s=c.refresh_s, full_list_s=c.full_list_s, lookback_s=c.lookback_s,
                                 cache_bytes=int(c.feature_cache_mb * (1 << 20)),
                                 read_concurrency=c.read_concurrency)
        self._embedder = embedder
        self._vectors = None
        self._dim_checked = False

    @property
    def embedder(self):
        if self._embedder is None:
            from astradup.features.embedder import get_embedder

            self._embedder = get_embedder(self.cfg.embedder)
        return self._embedder

    @property
    def vectors(self):
        if self._vectors is None:
            self._vectors = self._open_vectors()
        return self._vectors

    def _open_vectors(self, recreate: bool = False):
        """The Milvus copy as the config describes it (dims, projection, retries, consistency)."""
        from astradup.store.projection import ProjectedVectors, load_projection
        from astradup.store.retry import RetryPolicy
        from astradup.store.vectors import VectorStore

        a, v, e = self.cfg.audio, self.cfg.vectors, self.cfg.embedder
        audio_dim = vector_dim(a.n_mfcc)
        proj = load_projection(v.projection, v.frame_stride, v.audio_stride, embedder_kind=e.kind,
                               embedder_model=e.model, frame_dim=self.embedder.dim, audio_dim=audio_dim)
        return ProjectedVectors(VectorStore(
            self.cfg.resolved_milvus_uri, token=self.cfg.milvus_token, prefix=self.cfg.collection_prefix,
            retry=RetryPolicy.from_config(self.cfg.retry), consistency=self.cfg.search.consistency,
            visual_dim=proj.frames_dim(self.embedder.dim), audio_dim=proj.audio_dim(audio_dim),
            recreate=recreate, phash=v.phash, index_type=v.index_type), proj, v.merge_rows)

    def write(self, batch: list[VideoFeatures]) -> None:
        """Vectors first, then the shard with the status rows: a crash in between leaves the batch
        'not done', and the re-run's upsert replaces the vectors instead of duplicating them."""
        if not batch:
            return
        ok = [f for f in batch if f.status == STATUS_OK]
        if ok and not self._dim_checked and len(ok[0].embeddings):
            self.check_frame_dim(int(np.asarray(ok[0].embeddings).shape[1]))  # before writing anything
            self._dim_checked = True
        if ok:
            with telemetry.timed(telemetry.INDEX_STAGE_LATENCY, stage="write_milvus"):
                self.vectors.upsert_many(ok)
        with telemetry.timed(telemetry.INDEX_STAGE_LATENCY, stage="write_parquet"):
            self.shards.write_features(batch)

    def delete(self, video_id: str) -> int | None:
        """Remove a video's vectors and tombstone it; returns the rows removed, None when not indexed
        (or already deleted: ``remove`` tells the two apart)."""
        return self.remove(video_id).vectors_removed

    def remove(self, video_id: str) -> Deletion:
        """Delete one video exactly once: check its state, remove its vectors, write its tombstone.

        All three happen inside ``ShardStore.delete_guard()``, so of several concurrent deletes of
        one id only the first finds it ``ok`` and writes a tombstone; the others get
        ``already_deleted`` and write nothing (before, each saw ``ok`` and wrote its own).
        The rows are counted on this video alone, so another process indexing meanwhile does not
        skew the figure. Vectors go first: a search that got this video from its KNN just before
        finds no features once the tombstone lands, and drops the match (``Searcher.score``)."""
        with self.shards.delete_guard():
            status = self.shards.status_of(video_id)
            if status is not None and status["status"] == STATUS_DELETED:
                return Deletion(DELETE_ALREADY, None)
            if status is None or status["status"] != STATUS_OK:
                return Deletion(DELETE_NOT_INDEXED, None)
            rows = sum(self.vectors.count(video_id).values())
            self.vectors.delete_video(video_id)
            self.shards.mark_deleted(video_id)
        return Deletion(DELETE_DONE, rows)

    def remove_many(self, video_ids: Iterable[str]) -> dict[str, Deletion]:
        """``remove`` for a list (a takedown list): under one ``delete_guard`` one status pass, the
        vectors of every video still ok deleted together (a delete per collection per 500 ids) and
        one status shard of tombstones. One at a time, a count and a delete per collection per
        video cost ~1 s each on a busy 100 000-video server (docs/scaling.md). Rows are not
        counted: ``vectors_removed`` is None. Each id at most once, in the order given."""
        ids = list(dict.fromkeys(video_ids))
        with self.shards.delete_guard():
            status = self.shards.statuses_of(ids, fresh=True)
            out = {v: Deletion(DELETE_NOT_INDEXED, None) for v in ids}
            out.update({v: Deletion(DELETE_ALREADY, None) for v in ids
                        if status.get(v, {}).get("status") == STATUS_DELETED})
            todo = [v for v in ids if status.get(v, {}).get("status") == STATUS_OK]
            if todo:
                self.vectors.delete_videos(todo)
                self.shards.write_status([{"video_id": v, "uri": "", "status": STATUS_DELETED} for v in todo])
        out.update({v: Deletion(DELETE_DONE, None) for v in todo})
        return out

    def check_frame_dim(self, dim: int | None = None) -> None:
        """ConfigError when the shards hold frame vectors of another size than the embedder makes
        (another model, ``embedder.pca_dims`` changed since the index was built): mixing them would
        fail deep in scoring, or index videos that no query could be compared with. One video is
        read: an index is written with one setting at a time."""
        dim = self.embedder.dim if dim is None else dim
        sample = next((v for v, r in self.shards.latest_status().items() if r["status"] == STATUS_OK), None)
        f = self.shards.load_features([sample]).get(sample) if sample else None
        have = int(np.asarray(f.embeddings).shape[1]) if f is not None and len(f.embeddings) else None
        if have is not None and have != dim:
            raise ConfigError(
                f"the index in {self.cfg.resolved_shards_dir} holds {have}-d frame vectors, the configured "
                f"embedder makes {dim}-d: use the embedder settings it was built with (embedder.model, "
                f"embedder.pca_dims: {have if have < dim else 0}), or index the videos again into a new data dir")

    def close_vectors(self) -> None:
        """Close the vector store if this catalog opened one: a Milvus Lite file is then free for
        another process (one per file); the next use opens it again."""
        if self._vectors is not None:
            self._vectors.close()
            self._vectors = None

    def reindex(self, tick: Callable[[int, int], None] | None = None) -> int:
        """Rebuild the Milvus copy from the shards, from empty collections: this is also how an
        index moves to another embedder dim or ``vectors.projection`` (the old collections would
        not even open under the new config). ``tick(videos written, live videos)`` after each batch."""
        n = 0
        self.check_frame_dim()
        self.close_vectors()
        self._vectors = self._open_vectors(recreate=True)
        total = int(self.shards.stats()["videos_live"]) if tick else 0
        if tick:
            tick(0, total)
        for batch in self.shards.iter_features():
            self.vectors.upsert_many(batch)
            n += len(batch)
            if tick:
                tick(n, max(total, n))
        return n

    def stats(self) -> dict:
        """Shard and vector counts; ``quarantined`` names each damaged shard and why (the count is
        ``shards.shards_quarantined``), so the operator knows which file to restore or remove;
        ``index``: rows each vector index serves, and how many wait for a build (after a backfill or
        a server restart searches run slow until none do)."""
        return {"shards": self.shards.stats(), "vectors": self.vectors.count(), "index": self.vectors.index_progress(),
                "quarantined": self.shards.quarantined(),
                "milvus_uri": self.cfg.resolved_milvus_uri, "shards_dir": self.cfg.resolved_shards_dir}
