"""The dedup job's KNN in process: the library's Milvus vectors in a faiss index on disk.

Why: at 100 000 videos one 50-video batch of the self-join spent 13 of its 20 s on Milvus (5 372
frame rows and as many windows against 7 M vectors in 11 segments on two cores, then pymilvus
building ~340 000 hit objects; docs/scaling.md, eleventh round). The job asks every row's
neighbours exactly once, which an in-process inverted-file index serves best (as
facebookresearch/vsc2022's ``vsc/index.py`` does with faiss): the driver reads the vectors from
Milvus once (``refresh``: after the first run only the new videos' rows), writes the index under
``<data_dir>/dedup/knn/``, and every join actor opens it from there (``LocalKnn``).

Kept equal to the Milvus path: the same vectors (read from the collections, so projection and
strides are the index's own), the same query rows (each run of ``vectors.merge_rows`` alike rows
searched once, ``store.projection.search_alike_once``), exact inner products (IVF-Flat keeps the
vectors), the batch's own videos left out, hits as ``VectorStore.search_frames`` /
``search_audio`` return them. Differs: an IVF index probes
``dedup.nprobe`` lists where Milvus walks HNSW graphs (both approximate); under ``FLAT_MAX`` rows
the index is exact.

On disk: ``knn/<generation>/{frames,audio}.faiss`` + ``.npz`` (owner code and times per row) +
``meta.json`` (the video names, the ones removed since), and ``knn/CURRENT`` naming the
generation, replaced last, so a run killed while writing leaves the previous one in use.
"""
from __future__ import annotations

import functools
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from astradup.dedup.store import atomic_bytes
from astradup.store.projection import search_alike_once

FLAT_MAX = 200_000  # rows up to which a modality's index is exact (a flat scan is then cheap)
TRAIN_PER_LIST = 40  # training rows per inverted list (faiss warns under 39)
REBUILD_DEAD_SHARE = 0.25  # removed videos' share of rows from which the index is rebuilt


class Modality(Enum):
    """A searched collection and the times its hits carry."""

    FRAMES = ("frames", 1)  # (video_id, t, similarity)
    AUDIO = ("audio", 2)  # (video_id, t_start, t_end, similarity)

    def __init__(self, key: str, n_times: int) -> None:
        self.key = key
        self.n_times = n_times


@dataclass
class _Part:
    index: Any  # faiss.Index, row ids 0..n-1
    owner: np.ndarray  # int32 video code per row
    times: np.ndarray  # float32 [n, n_times]

    def rows_of(self, codes: list[int]) -> np.ndarray:
        """The rows of these videos, from a sort by owner made once (not a scan of every row per
        request: 7 M rows at 100 000 videos)."""
        if not hasattr(self, "_order"):
            self._order = np.argsort(self.owner, kind="stable")
            self._bounds = np.searchsorted(self.owner[self._order], np.arange(int(self.owner.max(initial=-1)) + 2))
        b = self._bounds
        spans = [self._order[b[c]:b[c + 1]] for c in codes if 0 <= c < len(b) - 1]
        return np.concatenate(spans) if spans else np.zeros(0, np.int64)


def _faiss():
    import faiss

    return faiss


def _new_index(vectors: np.ndarray) -> Any:
    """Flat (exact) for a small library, else IVF-Flat with ~2 sqrt(n) lists trained on a fixed sample."""
    faiss = _faiss()
    n, d = vectors.shape
    if n <= FLAT_MAX:
        return faiss.IndexFlatIP(d)
    nlist = int(min(65536, 2 * math.sqrt(n)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10
    sample = np.random.default_rng(0).choice(n, min(n, TRAIN_PER_LIST * nlist), replace=False)
    index.train(vectors[np.sort(sample)])
    return index


class LocalKnn:
    """One generation of the index, opened read-only; ``search_frames`` / ``search_audio`` take the
    raw query rows (projected here, as ``ProjectedVectors`` does) and answer like Milvus."""

    def __init__(self, folder: Path, projection: Any, nprobe: int, merge_rows: float = 1.0) -> None:
        meta = json.loads((folder / "meta.json").read_text())
        self.folder, self.projection, self.nprobe, self.merge_rows = folder, projection, nprobe, merge_rows
        self.names: list[str] = meta["names"]
        self.names_arr = np.asarray(self.names + [""], dtype=object)  # code -1 (no hit) -> ""
        self.code = {v: i for i, v in enumerate(self.names)}
        self.dead = {self.code[v] for v in meta["dead"] if v in self.code}
        self.parts = {m: _read_part(folder, m, mapped=True) for m in Modality}

    @classmethod
    def open(cls, root: Path, projection: Any, nprobe: int, merge_rows: float = 1.0) -> "LocalKnn":
        """``merge_rows``: ``vectors.merge_rows``, as the catalog's Milvus searches use it (1 = every row)."""
        return cls(root / (root / "CURRENT").read_text().strip(), projection, nprobe, merge_rows)

    def videos(self) -> set[str]:
        """The videos whose rows the index holds and answers with (removed ones excluded)."""
        return {v for i, v in enumerate(self.names) if i not in self.dead}

    def search_frames(self, vectors: np.ndarray, k: int, exclude: Iterable[str] | str | None = None):
        return self._alike_once(Modality.FRAMES, self.projection.query_frames(vectors), k, exclude)

    def search_audio(self, vectors: np.ndarray, k: int, exclude: Iterable[str] | str | None = None):
        return self._alike_once(Modality.AUDIO, self.projection.query_audio(vectors), k, exclude)

    def _alike_once(self, m: Modality, q: np.ndarray, k: int, exclude) -> list[list[tuple]]:
        return search_alike_once(functools.partial(self._search, m), q, k, exclude, self.merge_rows)

    def _search(self, m: Modality, q: np.ndarray, k: int, exclude) -> list[list[tuple]]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        part = self.parts[m]
        q = np.ascontiguousarray(np.asarray(q, np.float32).reshape(len(q), -1))
        if not len(q) or not len(part.owner):
            return [[] for _ in range(len(q))]
        skip = {exclude} if isinstance(exclude, str) else set(exclude or ())
        codes = [self.code[v] for v in skip if v in self.code] + sorted(self.dead)
        sims, labels = part.index.search(q, min(k, len(part.owner)), params=self._params(part, codes))
        ok = labels >= 0
        owner = np.where(ok, part.owner[np.maximum(labels, 0)], -1)
        names = self.names_arr[owner].tolist()
        times = part.times[np.maximum(labels, 0)].tolist()
        sims_l, ok_l = sims.tolist(), ok.tolist()
        if m is Modality.FRAMES:
            return [[(n, t[0], s) for n, t, s, o in zip(nr, tr, sr, kr) if o]
                    for nr, tr, sr, kr in zip(names, times, sims_l, ok_l)]
        return [[(n, t[0], t[1], s) for n, t, s, o in zip(nr, tr, sr, kr) if o]
                for nr, tr, sr, kr in zip(names, times, sims_l, ok_l)]

    def _params(self, part: _Part, codes: list[int]) -> Any:
        """Search parameters leaving out ``codes``' rows: a bitmap of the allowed rows (one bit test
        per scanned row), those rows found from a sort made once (``np.isin`` over every owner was
        ~55 ms a request at 7 M rows)."""
        faiss = _faiss()
        p = faiss.SearchParametersIVF(nprobe=min(self.nprobe, part.index.nlist)) \
            if isinstance(part.index, faiss.IndexIVF) else faiss.SearchParameters()
        if codes:
            allowed = np.ones(len(part.owner), bool)
            allowed[part.rows_of(codes)] = False
            bits = np.packbits(allowed, bitorder="little")
            sel = faiss.IDSelectorBitmap(len(part.owner), faiss.swig_ptr(bits))
            sel.bits_ref = bits  # the selector reads the array: keep it alive as long as the selector
            p.sel = sel
            p.sel_ref = sel
        return p


def _read_part(folder: Path, m: Modality, mapped: bool = False) -> _Part:
    """``mapped``: an IVF index's lists memory-mapped, read-only (the join actors: the actors of a
    node share the page cache instead of each holding ~1 GB per modality at 100 000 videos)."""
    faiss = _faiss()
    index = faiss.read_index(str(folder / f"{m.key}.faiss"), faiss.IO_FLAG_MMAP if mapped else 0)
    with np.load(folder / f"{m.key}.npz") as z:
        return _Part(index, z["owner"], z["times"])


def _write_part(folder: Path, m: Modality, part: _Part) -> None:
    _faiss().write_index(part.index, str(folder / f"{m.key}.faiss"))
    np.savez(folder / f"{m.key}.npz", owner=part.owner, times=part.times)


def refresh(vectors: Any, root: Path, live: set[str], say: Callable[[str], None] = print,
            fresh: bool = False) -> Path:
    """Make ``root``'s current generation hold every ``live`` video: the first time (or ``fresh``, or
    once removed videos hold ``REBUILD_DEAD_SHARE`` of the rows, or when the collections' rows were
    made under another projection than the generation's) every row of the collections, otherwise
    the current generation plus the new videos' rows; removed videos are left out of every answer.
    ``vectors``: the catalog's (``VectorStore.scan_vectors``; its ``projection``, when it has one,
    says how the rows were made); returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    cur = _current(root)
    meta = json.loads((cur / "meta.json").read_text()) if cur else None
    held = set(meta["names"]) if meta else set()
    new, dead = sorted(live - held), sorted(held - live)
    made_as = rows_signature(vectors)
    # A generation that does not say how its rows were made (written before this check) is rebuilt once.
    remade = meta is not None and meta.get("rows_signature") != made_as
    if meta and not fresh and not remade and not new and dead == meta["dead"]:
        return root
    if remade:
        why = ("the library's vectors were rebuilt under another projection (astradup reindex); reading them again"
               if "rows_signature" in meta else
               "it does not record which projection made its rows (written by an earlier version); reading "
               "them again once")
        say(f"dedup: local KNN index: {why}")
    rebuild = fresh or remade or meta is None or \
        sum(meta["frame_rows"].get(v, 0) for v in dead) >= REBUILD_DEAD_SHARE * max(1, meta["rows"])
    if not rebuild and not new:  # only removals: the same rows, a new list of those left out
        _write_json(cur / "meta.json", {**meta, "dead": dead})
        return root
    t0, gen = time.time(), f"g{time.time_ns()}"
    tmp = root / f".{gen}"
    tmp.mkdir()
    code = {} if rebuild else {v: i for i, v in enumerate(meta["names"])}
    say(f"dedup: local KNN index: reading every vector of the library from Milvus ({len(live)} videos)" if rebuild
        else f"dedup: local KNN index: adding {len(new)} new videos' vectors")
    rows = {}
    for m in Modality:  # one modality at a time: at most one collection's vectors in memory
        scan = vectors.scan_vectors(m.key, None if rebuild else new)
        keep = np.asarray([v in live for v in scan.names], bool)[scan.owner] if len(scan.owner) else slice(None)
        remap = np.asarray([code.setdefault(v, len(code)) if v in live else -1 for v in scan.names], np.int32)
        owner = remap[scan.owner[keep]] if len(scan.owner) else np.zeros(0, np.int32)
        times = scan.times[keep].reshape(len(owner), m.n_times)
        vecs = np.ascontiguousarray(scan.vectors[keep], np.float32)
        del scan
        if rebuild:
            part = _Part(_new_index(vecs), owner, times)
        else:
            old = _read_part(cur, m)
            part = _Part(old.index, np.concatenate([old.owner, owner]), np.concatenate([old.times, times]))
        if len(vecs):
            part.index.add(vecs)
        _write_part(tmp, m, part)
        rows[m] = part.owner
        del part, vecs
    names = list(code)
    dead = sorted(set(names) - live)  # after a rebuild none: it reads only live videos' rows
    per_video = np.bincount(rows[Modality.FRAMES], minlength=len(names))
    _write_json(tmp / "meta.json", {
        "names": names, "dead": dead, "rows": int(len(rows[Modality.FRAMES])), "rows_signature": made_as,
        "frame_rows": {v: int(n) for v, n in zip(names, per_video.tolist()) if n}})
    os.replace(tmp, root / gen)
    atomic_bytes(root / "CURRENT", gen.encode())
    for old_gen in root.iterdir():  # earlier generations, and a killed run's temporary folder
        if old_gen.is_dir() and old_gen.name != gen:
            shutil.rmtree(old_gen, ignore_errors=True)
    say(f"dedup: local KNN index {gen}: {len(rows[Modality.FRAMES])} frame and {len(rows[Modality.AUDIO])} "
        f"audio rows of {len(names) - len(dead)} videos ({time.time() - t0:.1f} s)")
    return root


def rows_signature(vectors: Any) -> str:
    """How the store's rows were made: its projection's ``signature`` ("" for a store that keeps
    vectors as given)."""
    projection = getattr(vectors, "projection", None)
    return projection.signature() if projection is not None else ""


def _write_json(path: Path, obj: dict) -> None:
    atomic_bytes(path, json.dumps(obj).encode())


def _current(root: Path) -> Path | None:
    try:
        folder = root / (root / "CURRENT").read_text().strip()
    except FileNotFoundError:
        return None
    return folder if (folder / "meta.json").exists() else None
