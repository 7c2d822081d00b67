"""What the Milvus copy of a video keeps: its vectors projected to a few dimensions, every n-th row.

Milvus only chooses candidates (``search.max_candidates`` videos by KNN votes); every score,
label and interval is computed afterwards from the full features in the Parquet shards. So the
searchable copy can be far smaller than the record without moving any reported figure: on the
dev benchmark, frames and audio windows projected to 32 dimensions and every 2nd row indexed
kept recall@1 and the segment scores unchanged while the vector store shrank ~25x (and a
60 s query touches 16x fewer bytes per row). docs/performance.md has the measurements.

The projection is the top right singular vectors of *uncentred* unit vectors: the k-d map that
best keeps inner products (centring would shift every similarity). Rows are L2-normalised again
after projecting, so inner product stays the metric. Queries are projected but never strided:
every query second still looks for its neighbours. What a search costs is its rows (a Milvus
server answered about 1 500 a second on two cores at 100 000 videos), and consecutive seconds of one shot, or
overlapping audio windows, are often the same row to the KNN: a run of rows at least
``vectors.merge_rows`` alike (in the KNN's space) to its first is searched once, and every row of
the run is given the first's neighbours (``alike_runs``). On the dev benchmark's real queries that
is 2.5x fewer frame rows at 0.95; docs/scaling.md has what it does to latency and quality.

Projecting to few dimensions raises the similarity of unrelated rows (on the dev sources, 3.5% of
unrelated frame pairs reach 0.55 in 32-d against 0.24% in full), so a rule that reads the KNN's
similarities against a full-space floor (common segments count the videos a row matches at
match level) would count unrelated videos. The file therefore also carries, per modality, the
similarity quantiles of unrelated rows in both spaces (``tails``), and ``knn_floor`` maps a
full-space floor to the KNN-space one that unrelated rows pass as rarely.

``vectors.projection`` in the config: ``builtin`` (the matrices shipped in astradup/data, fitted
by scripts/fit_projection.py), a path to such an .npz, or ``none`` (full vectors).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from astradup.errors import ConfigError
from astradup.features.basis import BUILTIN, TAIL_PROBS, project_rows, read_fit, save  # noqa: F401 (re-exported)
from astradup.records import VideoFeatures

log = logging.getLogger(__name__)

def tail_table(per_video: Sequence[np.ndarray], basis: np.ndarray | None) -> np.ndarray | None:
    """[2, len(TAIL_PROBS)]: the similarity that a share TAIL_PROBS[i] of row pairs from two
    *different* videos reaches, in full (row 0) and projected (row 1) space; None without a basis
    or with fewer than two videos."""
    vids = [np.asarray(x, np.float32) for x in per_video if len(x)]
    if basis is None or len(vids) < 2:
        return None
    full, proj = [], []
    for i in range(len(vids) - 1):
        rest = np.concatenate(vids[i + 1:])
        full.append((vids[i] @ rest.T).ravel())
        proj.append((project_rows(vids[i], basis) @ project_rows(rest, basis).T).ravel())
    q = 1.0 - TAIL_PROBS
    return np.stack([np.quantile(np.concatenate(full), q), np.quantile(np.concatenate(proj), q)]).astype(np.float32)


def matching_floor(floor: float, table: np.ndarray | None) -> float:
    """The projected-space similarity that unrelated rows reach as rarely as they reach ``floor``
    in full space (never below ``floor``); ``floor`` itself without a table. Beyond the table's
    rarest share the rarest projected quantile is used."""
    if table is None:
        return float(floor)
    full, proj = np.maximum.accumulate(table[0]), np.maximum.accumulate(table[1])
    log_p = np.interp(floor, full, np.log(TAIL_PROBS))
    return float(max(floor, np.interp(-log_p, -np.log(TAIL_PROBS), proj)))


def fit_basis(x: np.ndarray, k: int) -> np.ndarray:
    """[D, k] top right singular vectors of the uncentred rows of ``x``."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) < k:
        raise ValueError(f"need at least {k} rows of vectors to fit {k} dimensions, got {x.shape}")
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return vt[:k].T.astype(np.float32)


@dataclass(frozen=True)
class IndexProjection:
    """The map from a video's features to its searchable rows; identity when both bases are None."""

    frame_basis: np.ndarray | None = None  # [D, k]
    audio_basis: np.ndarray | None = None  # [Da, ka]
    frame_stride: int = 1
    audio_stride: int = 1
    frame_tails: np.ndarray | None = None  # tail_table of the frame basis
    audio_tails: np.ndarray | None = None

    def knn_floor(self, floor: float, modality: str) -> float:
        """``floor`` (a full-space similarity) as the KNN sees it (``matching_floor``): the same for
        a modality kept whole or projected without a tail table."""
        basis, table = self._basis_and_tails(modality)
        return matching_floor(floor, table if basis is not None else None)

    def _basis_and_tails(self, modality: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        return (self.frame_basis, self.frame_tails) if modality == "frames" else (self.audio_basis, self.audio_tails)

    def unrelated_level(self, share: float, modality: str) -> float:
        """The similarity, as the KNN sees it, that only ``share`` of unrelated row pairs reach (the
        tail table fitted with the basis); 0 when no table says (a search then counts every hit)."""
        basis, table = self._basis_and_tails(modality)
        if table is None:
            return 0.0
        side = np.maximum.accumulate(table[1] if basis is not None else table[0])
        return float(np.interp(-np.log(share), -np.log(TAIL_PROBS), side))

    def signature(self) -> str:
        """What the stored rows depend on (bases and strides), as a short hex digest: a copy of the
        Milvus rows made under one projection (the dedup job's local index) is stale under another
        (``astradup reindex`` moves an index to another projection or embedder dim)."""
        h = hashlib.blake2b(digest_size=12)
        for basis in (self.frame_basis, self.audio_basis):
            b = np.ascontiguousarray(basis, np.float32) if basis is not None else None
            h.update(b"none" if b is None else repr(b.shape).encode() + b.tobytes())
        h.update(f"{self.frame_stride}/{self.audio_stride}".encode())
        return h.hexdigest()

    def frames_dim(self, full: int) -> int:
        return full if self.frame_basis is None else int(self.frame_basis.shape[1])

    def audio_dim(self, full: int) -> int:
        return full if self.audio_basis is None else int(self.audio_basis.shape[1])

    def query_frames(self, x: np.ndarray) -> np.ndarray:
        return project_rows(x, self.frame_basis)

    def query_audio(self, x: np.ndarray) -> np.ndarray:
        return project_rows(x, self.audio_basis)

    def reduce(self, f: VideoFeatures) -> VideoFeatures:
        """The record as Milvus stores it: projected vectors of every n-th frame / window (the
        first row always, so a clip shorter than the stride is still indexed)."""
        ts = np.asarray(f.timestamps, np.float32).reshape(-1)
        keep = np.arange(len(ts))[:: max(1, self.frame_stride)]
        win = np.asarray(f.audio_windows, np.float32).reshape(-1, 2)
        akeep = np.arange(len(win))[:: max(1, self.audio_stride)]
        emb = np.asarray(f.embeddings, np.float32)
        av = np.asarray(f.audio_vectors, np.float32)
        ph = np.asarray(f.phash, np.uint8)
        return dataclasses.replace(
            f, timestamps=ts[keep],
            embeddings=project_rows(emb[keep], self.frame_basis) if len(emb) else emb,
            phash=ph[keep] if len(ph) else ph,
            pdq=f.pdq[keep] if len(f.pdq) else f.pdq, pdq_quality=f.pdq_quality[keep] if len(f.pdq) else f.pdq_quality,
            audio_windows=win[akeep], audio_vectors=project_rows(av[akeep], self.audio_basis) if len(av) else av)


def load_projection(setting: str, frame_stride: int, audio_stride: int, *, embedder_kind: str,
                    embedder_model: str, frame_dim: int, audio_dim: int) -> IndexProjection:
    """The projection the config names, checked against the embedder and audio vectors in use.

    A frame basis fitted for another model (say the builtin SSCD one while CLIP is configured)
    would map unrelated vectors onto each other, so it is not used: frames then go in whole,
    and the log says so. A wrong dimension in a user's own file is a ConfigError.
    """
    setting = (setting or "none").strip()
    if setting.lower() in ("none", "off", ""):
        return IndexProjection(None, None, max(1, frame_stride), max(1, audio_stride))
    path, fit = read_fit(setting, "vectors.projection")
    frames, audio, descriptor = fit["frames"], fit["audio"], fit["descriptor"]
    kind, model = fit["kind"], fit["model"]
    if frames is not None and (model != embedder_model or kind != embedder_kind):
        log.info("vectors.projection %s was fitted for %s/%s, not %s/%s: frames are indexed whole",
                 path, kind, model, embedder_kind, embedder_model)
        frames = None
    if frames is not None and frames.shape[0] != frame_dim and descriptor is not None \
            and descriptor.shape[0] == frames.shape[0] and descriptor.shape[1] >= frame_dim:
        # The embedder hands on its output already reduced by this file's descriptor basis
        # (embedder.pca_dims): the same map expressed on the reduced vectors.
        frames = (descriptor[:, :frame_dim].T @ frames).astype(np.float32)
    for name, basis, dim in (("frames", frames, frame_dim), ("audio", audio, audio_dim)):
        if basis is not None and basis.shape[0] != dim:
            raise ConfigError(f"vectors.projection {path}: {name} basis is for {basis.shape[0]}-d vectors, "
                              f"the configured features are {dim}-d")
    return IndexProjection(frames, audio, max(1, frame_stride), max(1, audio_stride),
                           fit["frame_tails"] if frames is not None else None,
                           fit["audio_tails"] if audio is not None else None)


def alike_runs(rows: np.ndarray, level: float) -> np.ndarray:
    """Per row, the first row of its run: a run goes on while a row's inner product with the
    run's first reaches ``level`` (rows unit length). Comparing with the first, not the previous
    row, keeps a slow drift (a pan) from chaining unlike rows into one run. ``level`` >= 1: every
    row its own."""
    x = np.asarray(rows, np.float32)
    own = np.arange(len(x))
    if level >= 1.0 or len(x) < 2:
        return own
    head = 0
    for i in range(1, len(x)):
        if float(x[i] @ x[head]) >= level:
            own[i] = head
        else:
            head = i
    return own


def search_alike_once(search: Callable[..., list[list]], rows: np.ndarray, k: int, exclude: Any,
                      level: float) -> list[list]:
    """``search(rows, k, exclude=exclude)``'s answer, each run of alike rows (``alike_runs`` at
    ``level``) searched once and its first row's hits given to every row of the run (each row its
    own list). Every KNN over projected query rows goes through here (Milvus through
    ``ProjectedVectors``, the dedup job's in-process index), so both ask the same rows."""
    own = alike_runs(rows, level) if np.ndim(rows) == 2 else np.arange(0)
    heads = np.flatnonzero(own == np.arange(len(own)))
    if len(heads) == len(own):
        return search(rows, k, exclude=exclude)
    found = dict(zip(heads.tolist(), search(rows[heads], k, exclude=exclude)))
    return [list(found[int(o)]) for o in own]


class ProjectedVectors:
    """A VectorStore seen through a projection: writes reduce, searches project the queries and
    search each run of alike rows once (``alike_runs``).

    Everything else (counts, deletes, listing ids, close) goes straight to the store.
    """

    def __init__(self, store: Any, projection: IndexProjection, merge_rows: float = 1.0) -> None:
        self.store = store
        self.projection = projection
        self.merge_rows = merge_rows

    def upsert_many(self, items: Sequence[VideoFeatures]) -> int:
        return self.store.upsert_many([self.projection.reduce(f) for f in items])

    def upsert_video(self, f: VideoFeatures) -> None:
        self.store.upsert_many([self.projection.reduce(f)])

    def stored_rows(self, f: VideoFeatures) -> dict[str, int]:
        """Rows one write of ``f`` puts in each collection (what a count should find per video)."""
        g = self.projection.reduce(f)
        t = len(np.asarray(g.timestamps).reshape(-1))
        return {"frames": t, "phash": t if len(g.phash) and getattr(self.store, "phash_enabled", True) else 0,
                "audio": len(np.asarray(g.audio_windows).reshape(-1, 2))}

    def search_frames(self, vectors: np.ndarray, k: int, exclude=None):
        return self._merged(self.store.search_frames, self.projection.query_frames(vectors), k, exclude)

    def search_audio(self, vectors: np.ndarray, k: int, exclude=None):
        return self._merged(self.store.search_audio, self.projection.query_audio(vectors), k, exclude)

    def _merged(self, search: Any, rows: np.ndarray, k: int, exclude: Any) -> list[list]:
        return search_alike_once(search, rows, k, exclude, self.merge_rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def __enter__(self) -> "ProjectedVectors":
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.close()
