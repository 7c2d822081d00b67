"""The dedup job's local KNN index (astradup/dedup/local_knn.py) against the Milvus Lite store it
reads: the same hits as the store's own searches (flat and IVF), only new videos read on a
refresh, removed videos never answered, and a refresh that fails part-way leaves the index in use."""
from __future__ import annotations

import json

import numpy as np
import pytest

from astradup.dedup import local_knn
from astradup.dedup.local_knn import LocalKnn, refresh
from astradup.store.vectors import VectorStore
from tests.store.test_vectors import DA, D, make


class Identity:
    """The store holds the vectors as given (no projection), so queries pass through too."""

    def query_frames(self, x):
        return np.asarray(x, np.float32)

    def query_audio(self, x):
        return np.asarray(x, np.float32)


class Counting:
    """The store, with each scan's video list recorded (None = every row)."""

    def __init__(self, store):
        self.store, self.scans = store, []

    def scan_vectors(self, kind, video_ids=None):
        self.scans.append((kind, None if video_ids is None else sorted(video_ids)))
        return self.store.scan_vectors(kind, video_ids)


@pytest.fixture()
def lib(tmp_path):
    s = VectorStore(str(tmp_path / "milvus.db"), prefix="k", visual_dim=D, audio_dim=DA)
    feats = {f"v{i:02d}": make(f"v{i:02d}", seed=i, t=8, w=4) for i in range(12)}
    s.upsert_many(list(feats.values()))
    yield s, feats, tmp_path / "knn"
    s.close()


def _same_hits(local, milvus, n_times):
    assert len(local) == len(milvus)
    for a, b in zip(local, milvus):
        assert [h[:1 + n_times] for h in a] == [h[:1 + n_times] for h in b]
        assert np.allclose([h[-1] for h in a], [h[-1] for h in b], atol=1e-5)


def test_local_index_answers_like_the_milvus_store(lib):
    store, feats, root = lib
    refresh(store, root, set(feats), say=lambda m: None)
    knn = LocalKnn.open(root, Identity(), nprobe=16)
    assert knn.videos() == set(feats)
    rng = np.random.default_rng(5)
    q = feats["v03"].embeddings + 0.05 * rng.normal(size=feats["v03"].embeddings.shape)
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    _same_hits(knn.search_frames(q, 5), store.search_frames(q, 5), 1)
    # the batch's own videos left out, as the server's filter leaves them out
    _same_hits(knn.search_frames(q, 5, exclude=["v03", "v04"]), store.search_frames(q, 5, exclude=["v03", "v04"]), 1)
    assert all(h[0] not in ("v03", "v04") for row in knn.search_frames(q, 30, exclude=["v03", "v04"]) for h in row)
    qa = feats["v07"].audio_vectors
    _same_hits(knn.search_audio(qa, 4, exclude="v01"), store.search_audio(qa, 4, exclude="v01"), 2)
    with pytest.raises(ValueError, match="k must be"):
        knn.search_frames(q, 0)


def test_alike_query_rows_are_searched_once_as_the_milvus_path_does(lib):
    """The dedup join asks the rows the catalog's searches ask: a run of ``vectors.merge_rows``
    alike rows once, its first row's hits for every row of it (store/projection.py)."""
    from astradup.store.projection import ProjectedVectors

    store, feats, root = lib
    refresh(store, root, set(feats), say=lambda m: None)
    base = feats["v05"].embeddings
    q = np.repeat(base, 3, axis=0)  # each frame three times (a still shot), slightly moved
    q = q + 0.01 * np.random.default_rng(1).normal(size=q.shape)
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    knn = LocalKnn.open(root, Identity(), nprobe=16, merge_rows=0.95)
    asked = []
    search = knn._search
    knn._search = lambda m, rows, k, exclude: asked.append(len(rows)) or search(m, rows, k, exclude)
    got = knn.search_frames(q, 4, exclude="v01")
    assert asked == [len(base)]  # one search per run of three
    _same_hits(got, ProjectedVectors(store, Identity(), 0.95).search_frames(q, 4, exclude="v01"), 1)
    assert all(got[i] == got[i - i % 3] for i in range(len(q)))
    # audio windows the same way; 1 (the default) asks every row
    qa = np.repeat(feats["v07"].audio_vectors, 2, axis=0)
    _same_hits(knn.search_audio(qa, 3), ProjectedVectors(store, Identity(), 0.95).search_audio(qa, 3), 2)
    asked.clear()
    every = LocalKnn.open(root, Identity(), nprobe=16)
    search1 = every._search
    every._search = lambda m, rows, k, exclude: asked.append(len(rows)) or search1(m, rows, k, exclude)
    every.search_frames(q, 4)
    assert asked == [len(q)]


def test_ivf_index_over_many_rows_finds_the_exact_neighbours(lib, monkeypatch):
    store, feats, root = lib
    monkeypatch.setattr(local_knn, "FLAT_MAX", 20)  # 96 frame rows: an inverted-file index
    monkeypatch.setattr(local_knn, "TRAIN_PER_LIST", 4)
    refresh(store, root, set(feats), say=lambda m: None)
    knn = LocalKnn.open(root, Identity(), nprobe=1000)  # every list probed: exact
    import faiss

    assert isinstance(knn.parts[local_knn.Modality.FRAMES].index, faiss.IndexIVF)
    q = feats["v09"].embeddings
    _same_hits(knn.search_frames(q, 6, exclude="v09"), store.search_frames(q, 6, exclude="v09"), 1)
    # one list probed still finds each stored frame itself first
    one = LocalKnn.open(root, Identity(), nprobe=1)
    assert [row[0][:2] for row in one.search_frames(q, 1)] == [("v09", float(t)) for t in feats["v09"].timestamps]


def test_refresh_reads_only_new_videos_and_never_answers_removed_ones(lib):
    store, feats, root = lib
    spy = Counting(store)
    first = {v for v in feats if v not in ("v10", "v11")}
    refresh(spy, root, first, say=lambda m: None)
    assert spy.scans == [("frames", None), ("audio", None)]
    refresh(spy, root, first, say=lambda m: None)  # nothing new: nothing read, same generation
    assert len(spy.scans) == 2
    gen = (root / "CURRENT").read_text()
    refresh(spy, root, first, say=lambda m: None, fresh=True)  # asked to: everything read again
    assert spy.scans[2:] == [("frames", None), ("audio", None)] and (root / "CURRENT").read_text() != gen
    del spy.scans[2:]
    refresh(spy, root, first | {"v10", "v11"}, say=lambda m: None)
    assert spy.scans[2:] == [("frames", ["v10", "v11"]), ("audio", ["v10", "v11"])]
    knn = LocalKnn.open(root, Identity(), nprobe=16)
    assert [r[0][0] for r in knn.search_frames(feats["v11"].embeddings, 1)] == ["v11"] * 8
    # v05 removed from the library: left out of every answer, without reading anything
    live = set(feats) - {"v05"}
    refresh(spy, root, live, say=lambda m: None)
    assert len(spy.scans) == 4
    knn = LocalKnn.open(root, Identity(), nprobe=16)
    assert "v05" not in knn.videos()
    assert all(h[0] != "v05" for row in knn.search_frames(feats["v05"].embeddings, 20) for h in row)
    # a quarter of the rows removed: the index is read again from the store
    refresh(spy, root, set(sorted(live)[3:]), say=lambda m: None)
    assert spy.scans[4:] == [("frames", None), ("audio", None)]
    meta = json.loads((root / (root / "CURRENT").read_text() / "meta.json").read_text())
    assert sorted(meta["names"]) == sorted(live)[3:] and meta["dead"] == []  # only live videos' rows kept
    assert LocalKnn.open(root, Identity(), 16).videos() == set(sorted(live)[3:])


def test_a_refresh_that_fails_part_way_leaves_the_index_in_use(lib):
    store, feats, root = lib
    refresh(store, root, set(feats) - {"v11"}, say=lambda m: None)
    before = (root / "CURRENT").read_text()

    class Outage(Counting):
        def scan_vectors(self, kind, video_ids=None):
            if kind == "audio":
                raise ConnectionError("milvus went away")
            return super().scan_vectors(kind, video_ids)

    with pytest.raises(ConnectionError):
        refresh(Outage(store), root, set(feats), say=lambda m: None)
    assert (root / "CURRENT").read_text() == before
    assert LocalKnn.open(root, Identity(), 16).videos() == set(feats) - {"v11"}
    refresh(store, root, set(feats), say=lambda m: None)  # the next run adds it, and clears the leftover
    assert LocalKnn.open(root, Identity(), 16).videos() == set(feats)
    assert [p.name for p in root.iterdir() if p.is_dir()] == [(root / "CURRENT").read_text()]


class Projected(Counting):
    """The store as the catalog holds it: with the projection its rows were written under."""

    def __init__(self, store, projection):
        super().__init__(store)
        self.projection = projection


def test_a_reindex_under_another_projection_rebuilds_the_index(lib):
    """``astradup reindex`` rewrites every Milvus row under a new ``vectors.projection``: the same
    videos, other rows. The local copy must be read again, not kept because no video is new."""
    from astradup.store.projection import IndexProjection

    store, feats, root = lib
    first = Projected(store, IndexProjection(None, None, 1, 1))
    refresh(first, root, set(feats), say=lambda m: None)
    refresh(first, root, set(feats), say=lambda m: None)
    assert first.scans == [("frames", None), ("audio", None)]  # built once, then current
    gen = (root / "CURRENT").read_text()
    said = []
    other = Projected(store, IndexProjection(None, None, 2, 1))  # another stride: other rows
    refresh(other, root, set(feats), say=said.append)
    assert other.scans == [("frames", None), ("audio", None)] and (root / "CURRENT").read_text() != gen
    assert any("another projection" in m for m in said)
    refresh(other, root, set(feats), say=lambda m: None)
    assert len(other.scans) == 2  # current again
    # a generation written before the check says nothing of its rows: rebuilt once
    meta_path = root / (root / "CURRENT").read_text() / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["rows_signature"]
    meta_path.write_text(json.dumps(meta))
    said.clear()
    refresh(other, root, set(feats), say=said.append)
    assert any("does not record" in m for m in said) and not any("another projection" in m for m in said)
    refresh(other, root, set(feats), say=lambda m: None)
    assert len(other.scans) == 4
    assert LocalKnn.open(root, Identity(), 16).videos() == set(feats)


def test_projection_signature_tells_bases_and_strides_apart():
    from astradup.store.projection import IndexProjection

    rng = np.random.default_rng(0)
    a = rng.normal(size=(8, 4)).astype(np.float32)
    sigs = {IndexProjection(None, None, 1, 1).signature(), IndexProjection(a, None, 1, 1).signature(),
            IndexProjection(a + 1e-3, None, 1, 1).signature(), IndexProjection(a, None, 2, 1).signature(),
            IndexProjection(None, a, 1, 1).signature(), IndexProjection(a[:, :3], None, 1, 1).signature()}
    assert len(sigs) == 6
    assert IndexProjection(a.copy(), None, 1, 1).signature() == IndexProjection(a, None, 1, 1).signature()
