"""VectorStore on a Milvus Lite file: search correctness, exact counts, delete, reopen."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from astradup.errors import ConfigError
from astradup.records import VideoFeatures
from astradup.store.milvus_collections import unpack_bits
from astradup.store.vectors import VectorStore
from astradup.uris import is_lite_uri

D, DA = 16, 8


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make(vid: str, seed: int, t: int = 6, w: int = 3) -> VideoFeatures:
    rng = np.random.default_rng(seed)
    starts = np.arange(w, dtype=np.float32) * 2
    return VideoFeatures(
        video_id=vid, uri=f"/v/{vid}.mp4",
        timestamps=np.arange(t, dtype=np.float32),
        embeddings=unit(rng.normal(size=(t, D))),
        phash=rng.integers(0, 256, size=(t, 32), dtype=np.uint8),
        audio_windows=np.stack([starts, starts + 5], axis=1),
        audio_vectors=unit(rng.normal(size=(w, DA))),
        chromaprint=np.zeros((0,), np.uint32), chromaprint_hz=0.0, meta={},
    )


@pytest.fixture()
def store(tmp_path):
    s = VectorStore(str(tmp_path / "milvus.db"), prefix="t", visual_dim=D, audio_dim=DA, phash="on")
    yield s
    s.close()


@pytest.fixture()
def filled(store):
    vids = [make(f"vid{i}", seed=i) for i in range(4)]
    assert store.upsert_many(vids) == 4
    return store, {f.video_id: f for f in vids}


def test_frame_search_finds_the_right_frame_with_ip_scores(filled):
    store, vids = filled
    a = vids["vid2"]
    hits = store.search_frames(a.embeddings[[1, 4]], k=5)
    assert len(hits) == 2
    for qi, ti in enumerate([1, 4]):
        vid, t, score = hits[qi][0]
        assert (vid, t) == ("vid2", float(ti)) and score == pytest.approx(1.0, abs=1e-5)
        # Every score is the dot product with the stored vector, best first.
        scores = [s for _, _, s in hits[qi]]
        assert scores == sorted(scores, reverse=True) and len(hits[qi]) == 5
        for v, t, s in hits[qi]:
            stored = vids[v].embeddings[int(t)]
            assert s == pytest.approx(float(stored @ a.embeddings[ti]), abs=1e-5)


def test_exclude_filters_the_query_video(filled):
    store, vids = filled
    q = vids["vid1"].embeddings[:2]
    for row in store.search_frames(q, k=8, exclude="vid1"):
        assert row and all(v != "vid1" for v, _, _ in row)
    assert all(v != "vid1" for row in store.search_phash(vids["vid1"].phash, 5, exclude="vid1") for v, _, _ in row)
    assert all(v != "vid1" for row in store.search_audio(vids["vid1"].audio_vectors, 5, exclude="vid1")
               for v, _, _, _ in row)


def test_phash_scores_are_hamming_and_ordered(store):
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, size=(1, 32), dtype=np.uint8)
    bits = unpack_bits(base)[0]
    # Stored codes at Hamming distance 0, 3, 10 and 40 from the query.
    variants = []
    for flips in (0, 3, 10, 40):
        b = bits.copy()
        idx = rng.choice(256, flips, replace=False)
        b[idx] = 1 - b[idx]
        variants.append(np.packbits(b.astype(np.uint8)))
    f = make("ph", seed=1, t=4)
    f.phash = np.stack(variants)
    store.upsert_video(f)
    store.upsert_video(make("other", seed=2, t=4))
    row = store.search_phash(base, k=4, exclude="other")[0]
    assert [(v, t) for v, t, _ in row] == [("ph", 0.0), ("ph", 1.0), ("ph", 2.0), ("ph", 3.0)]
    assert [s for _, _, s in row] == pytest.approx([1.0, 1 - 3 / 256, 1 - 10 / 256, 1 - 40 / 256])
    with pytest.raises(ValueError, match="uint8"):
        store.search_phash(base.astype(np.int64), k=1)


def test_audio_search(filled):
    store, vids = filled
    a = vids["vid3"]
    row = store.search_audio(a.audio_vectors[2:3], k=3)[0]
    vid, t0, t1, score = row[0]
    assert (vid, t0, t1) == ("vid3", 4.0, 9.0) and score == pytest.approx(1.0, abs=1e-5)


def test_reupsert_keeps_counts_exact_and_delete_removes(filled):
    store, vids = filled
    assert store.count() == {"frames": 24, "phash": 24, "audio": 12}
    store.upsert_video(vids["vid0"])
    store.upsert_video(make("vid0", seed=50, t=2, w=1))  # re-index with fewer frames
    assert store.count() == {"frames": 20, "phash": 20, "audio": 10}
    store.upsert_many([vids["vid1"], vids["vid1"]])  # duplicates inside one batch keep one copy
    assert store.count() == {"frames": 20, "phash": 20, "audio": 10}
    # A failed record leaves the last good vectors alone.
    assert store.upsert_many([VideoFeatures.failed("vid1", "/v", "decode error", dim=D)]) == 0
    assert store.has_video("vid1")

    store.delete_video("vid2")
    assert store.count() == {"frames": 14, "phash": 14, "audio": 7}
    assert not store.has_video("vid2") and store.has_video("vid3")
    assert store.video_ids() == {"vid0", "vid1", "vid3"}
    assert all(v != "vid2" for v, _, _ in store.search_frames(vids["vid2"].embeddings[0], k=20)[0])
    store.delete_videos(["vid0", "vid3"])  # several at once: one delete per collection
    assert store.video_ids() == {"vid1"} and store.count() == {"frames": 6, "phash": 6, "audio": 3}


def test_index_progress_counts_rows_ready(filled):
    store, _ = filled
    assert store.index_progress() == {"frames": {"rows": 24, "indexed": 24, "pending": 0, "ready": 24},
                                      "audio": {"rows": 12, "indexed": 12, "pending": 0, "ready": 12}}


def test_index_progress_reads_a_rebuild_and_a_first_build_as_not_ready(filled, monkeypatch):
    """What a Milvus 2.3 server reports (docs/scaling.md, tenth round): during a rebuild every row
    indexed and some pending; during a first build rows neither indexed nor ready."""
    store, _ = filled
    answers = iter([{"total_rows": 7_000, "indexed_rows": 7_000, "pending_index_rows": 5_000},
                    {"total_rows": 7_000, "indexed_rows": 2_000, "pending_index_rows": 5_000}])
    monkeypatch.setattr(store, "_call", lambda what, fn: next(answers))
    p = store.index_progress()
    assert p["frames"]["ready"] == 2_000 and p["audio"]["ready"] == 2_000


def test_get_frames_sorted_by_time(store):
    f = make("g", seed=4, t=5)
    perm = np.array([3, 0, 4, 1, 2])
    shuffled = VideoFeatures(**{**f.__dict__, "timestamps": f.timestamps[perm], "embeddings": f.embeddings[perm],
                                "phash": f.phash[perm]})
    store.upsert_video(shuffled)
    t, v = store.get_frames("g")
    assert t.dtype == np.float32 and v.dtype == np.float32
    np.testing.assert_array_equal(t, f.timestamps)
    np.testing.assert_allclose(v, f.embeddings, atol=1e-6)
    t, v = store.get_frames("missing")
    assert t.shape == (0,) and v.shape == (0, D)


def test_video_without_audio_and_odd_ids(store):
    f = make('we"ird\\id', seed=9, w=0)
    f.audio_vectors = np.zeros((0, 0), np.float32)
    store.upsert_video(f)
    assert store.count()["audio"] == 0 and store.has_video('we"ird\\id')
    assert store.search_frames(f.embeddings[0], k=1)[0][0][0] == 'we"ird\\id'
    assert store.search_frames(f.embeddings[0], k=1, exclude='we"ird\\id') == [[]]


def test_reopen_lite_file_and_search_again(tmp_path):
    path = str(tmp_path / "m.db")
    f = make("keep", seed=11)
    with VectorStore(path, prefix="t", visual_dim=D, audio_dim=DA, phash="on") as s:
        s.upsert_many([f, make("gone", seed=12)])
        s.delete_video("gone")
    with VectorStore(path, prefix="t", visual_dim=D, audio_dim=DA, phash="on") as s:
        assert s.count() == {"frames": 6, "phash": 6, "audio": 3}
        assert s.search_frames(f.embeddings[3], k=1)[0][0][:2] == ("keep", 3.0)
        assert s.search_phash(f.phash[2:3], k=1)[0][0] == ("keep", 2.0, 1.0)
        s.upsert_video(make("new", seed=13))
        assert s.video_ids() == {"keep", "new"}


def test_stores_sharing_a_lite_file_in_one_process(tmp_path):
    from milvus_lite.server_manager import server_manager_instance

    path = str(tmp_path / "m.db")
    a = VectorStore(path, prefix="t", visual_dim=D, audio_dim=DA)
    b = VectorStore(path, prefix="t", visual_dim=D, audio_dim=DA)
    f = make("x", seed=1)
    a.upsert_video(f)
    a.close()  # b keeps the embedded server alive
    assert b.search_frames(f.embeddings[2], k=1)[0][0][:2] == ("x", 2.0)
    b.close()  # the last one stops it, so the next open really reads the file back
    assert os.path.abspath(path) not in server_manager_instance._servers
    with VectorStore(path, prefix="t", visual_dim=D, audio_dim=DA) as c:
        assert c.count()["frames"] == 6


def test_dim_mismatch_with_existing_collection_is_a_config_error(tmp_path):
    path = str(tmp_path / "m.db")
    VectorStore(path, prefix="t", visual_dim=D, audio_dim=DA).close()
    with pytest.raises(ConfigError, match="16-d vectors but 32-d"):
        VectorStore(path, prefix="t", visual_dim=32, audio_dim=DA)
    with VectorStore(path, prefix="t2", visual_dim=32, audio_dim=DA) as s:  # a new prefix is fine
        assert s.count()["frames"] == 0
    with VectorStore(path, prefix="t", visual_dim=D, audio_dim=DA) as s:
        bad = make("b", seed=1)
        bad.embeddings = unit(np.ones((6, 32), np.float32))
        with pytest.raises(ConfigError, match="embeddings"):
            s.upsert_video(bad)
        with pytest.raises(ConfigError, match="16-d"):
            s.search_frames(np.ones((1, 32), np.float32), k=1)


def test_lite_file_is_owned_by_one_process(tmp_path):
    path = str(tmp_path / "m.db")
    with VectorStore(path, prefix="t", visual_dim=D, audio_dim=DA):
        code = ("from astradup.store.vectors import VectorStore\n"
                "from astradup.errors import ConfigError\n"
                f"try:\n    VectorStore({path!r}, visual_dim={D}, audio_dim={DA})\n"
                "except ConfigError as e:\n    print('ConfigError', e)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert "ConfigError" in out.stdout and "one process" in out.stdout, out.stdout + out.stderr


def test_uri_kinds(tmp_path):
    assert is_lite_uri("data/milvus.db") and is_lite_uri("/abs/x.db")
    assert not is_lite_uri("http://127.0.0.1:19530") and not is_lite_uri("https://x.zillizcloud.com")
    with pytest.raises(ConfigError, match=r"\.db"):
        VectorStore(str(tmp_path / "milvus"), visual_dim=D, audio_dim=DA)


def test_lite_keeps_phash_codes_out_of_milvus_by_default(tmp_path):
    """vectors.phash: auto = no pHash collection on Lite (scoring reads the codes from the shards);
    a database made with one still opens, its rows untouched, and reindex (recreate) drops it."""
    path = str(tmp_path / "m.db")
    f = make("keep", seed=11)
    with VectorStore(path, prefix="t", visual_dim=D, audio_dim=DA) as s:
        assert not s.phash_enabled
        s.upsert_many([f])
        assert s.phash not in s.client.list_collections()
        assert s.count() == {"frames": 6, "phash": 0, "audio": 3}
        assert s.search_frames(f.embeddings[3], k=1)[0][0][:2] == ("keep", 3.0)
        with pytest.raises(ConfigError, match="vectors.phash"):
            s.search_phash(f.phash[:1], k=1)
        s.delete_video("keep")
        assert s.count() == {"frames": 0, "phash": 0, "audio": 0}
    with VectorStore(path, prefix="old", visual_dim=D, audio_dim=DA, phash="on") as s:
        s.upsert_many([f])
    with VectorStore(path, prefix="old", visual_dim=D, audio_dim=DA) as s:
        assert s.phash in s.client.list_collections() and s.count()["phash"] == 0
        assert s.search_frames(f.embeddings[0], k=1)[0][0][:2] == ("keep", 0.0)
    with VectorStore(path, prefix="old", visual_dim=D, audio_dim=DA, recreate=True) as s:
        assert s.phash not in s.client.list_collections()
    with pytest.raises(ConfigError, match="vectors.phash"):
        VectorStore(path, prefix="x", visual_dim=D, audio_dim=DA, phash="maybe")


def test_index_type_reaches_the_collections_and_searches_still_work(tmp_path):
    """vectors.index_type (IVF_SQ8: a smaller Lite index) goes from the config to the frame and
    audio collections; KNN still finds a frame itself."""
    from astradup.catalog import Catalog
    from astradup.config import load_config

    cfg = load_config(overrides={"data_dir": str(tmp_path / "data"), "vectors": {"index_type": "IVF_SQ8",
                                 "projection": "none", "frame_stride": 1, "audio_stride": 1}})

    class _Dim:
        dim, name = D, "fixed"

    cat = Catalog(cfg, embedder=_Dim())
    store = cat.vectors.store  # collections are made (with their index) when the store opens
    assert store.index_type == "IVF_SQ8"
    for name in (store.frames, store.audio):
        assert store.client.describe_index(name, "vector")["index_type"] == "IVF_SQ8"
    cat.vectors.close()
    f = make("keep", seed=11)
    with VectorStore(str(tmp_path / "m.db"), prefix="t", visual_dim=D, audio_dim=DA, index_type="IVF_SQ8") as s:
        s.upsert_many([f, make("other", seed=12)])
        assert s.search_frames(f.embeddings[3], k=1)[0][0][:2] == ("keep", 3.0)
        start, end = (float(x) for x in f.audio_windows[1])
        assert s.search_audio(f.audio_vectors[1], k=1)[0][0][:3] == ("keep", start, end)


def test_at_once_runs_a_servers_searches_together_and_keeps_their_order():
    """A query's frame, mirror, audio and pitch searches go to a server at once (Lite: in turn)."""
    import threading

    from astradup.store.vectors import VectorStore

    vs = object.__new__(VectorStore)  # the method alone: no connection needed
    vs.lite, vs._pool, vs._pool_lock = False, None, threading.Lock()
    meet = threading.Barrier(3, timeout=10)  # passes only if all three run at the same time

    def call(i):
        return lambda: (meet.wait(), i)[1]

    assert vs.at_once(call(0), call(1), call(2)) == [0, 1, 2]
    with pytest.raises(ZeroDivisionError):
        vs.at_once(lambda: 1, lambda: 1 / 0)
    vs._pool.shutdown()
    vs.lite, vs._pool = True, None
    threads = []
    assert vs.at_once(*(lambda i=i: threads.append(threading.get_ident()) or i for i in range(3))) == [0, 1, 2]
    assert threads == [threading.get_ident()] * 3 and vs._pool is None


def test_beside_runs_its_second_call_on_its_own_thread_even_from_a_busy_at_once_pool():
    """The pitch variants' request goes out beside the audio's second request from inside an
    ``at_once`` task: with every pool thread taken by such callers it must still be answered."""
    import threading

    from astradup.store.vectors import _AT_ONCE, VectorStore

    vs = object.__new__(VectorStore)
    vs.lite, vs._pool, vs._pool_lock = False, None, threading.Lock()
    pair = threading.Barrier(2, timeout=10)  # here and there run at the same time
    assert vs.beside(lambda: (pair.wait(), "here")[1], lambda: (pair.wait(), "there")[1]) == ("here", "there")
    vs.at_once(lambda: None, lambda: None)  # the pool exists now
    busy = threading.Barrier(_AT_ONCE, timeout=10)  # every pool thread holds a caller at once

    def caller(i):
        return lambda: (busy.wait(), vs.beside(lambda: i, lambda: -i))[1]

    futures = [vs._pool.submit(caller(i)) for i in range(_AT_ONCE)]
    assert [f.result(timeout=20) for f in futures] == [(i, -i) for i in range(_AT_ONCE)]
    with pytest.raises(ZeroDivisionError):
        vs.beside(lambda: 1, lambda: 1 / 0)
    vs._pool.shutdown()
    vs.lite = True
    threads = []
    assert vs.beside(lambda: threads.append(threading.get_ident()) or 1,
                     lambda: threads.append(threading.get_ident()) or 2) == (1, 2)
    assert threads == [threading.get_ident()] * 2
