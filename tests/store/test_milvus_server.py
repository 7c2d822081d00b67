"""Index and search against a real Milvus server on 127.0.0.1 (not the Lite file).

The server is Milvus 2.3 standalone from the ``milvus`` PyPI package (embedded etcd and local
storage, no Docker), started once for this module by ``tests/milvus_harness.py``. The test skips
only when that binary cannot run on this platform; a server that starts but misbehaves fails it.
"""
from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType

from astradup.catalog import Catalog
from astradup.config import load_config
from astradup.pipeline import index
from astradup.search import Searcher
from astradup.store.vectors import VectorStore
from tests.media import make_copy, make_video
from tests.milvus_harness import milvus_server


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory):
    for server in milvus_server(tmp_path_factory):
        yield server.uri


@pytest.fixture(scope="module")
def indexed(milvus_uri, tmp_path_factory):
    root = tmp_path_factory.mktemp("server_corpus")
    lib, queries = root / "lib", root / "queries"
    lib.mkdir()
    queries.mkdir()
    a = make_video(lib / "a.mp4", seconds=8, size=(320, 240), source="mandelbrot", audio="music", seed=1)
    make_video(lib / "b.mp4", seconds=8, size=(320, 240), source="life", audio="music", seed=2)
    make_video(lib / "c.mp4", seconds=8, size=(320, 240), source="boxes", audio="noise", seed=3)
    q = make_copy(a, queries / "a_copy.mp4", vf="scale=240:180", crf=30)
    over = {"data_dir": str(root / "data"), "pipeline": {"dashboard": False, "decode_concurrency": 1}}
    # pHash codes in Milvus on both (vectors.phash: on; the default makes no pHash collection), so
    # that the server's binary layout is checked and both pHash searches can be compared.
    server_cfg = load_config(overrides={**over, "milvus_uri": milvus_uri, "vectors": {"phash": "on"}})
    lite_cfg = load_config(overrides={**over, "data_dir": str(root / "lite"), "vectors": {"phash": "on"}})
    reports = {"server": index([str(lib)], server_cfg), "lite": index([str(lib)], lite_cfg)}
    server_default = load_config(overrides={**over, "milvus_uri": milvus_uri})
    return {"server": server_cfg, "lite": lite_cfg, "reports": reports, "lib": lib, "query": q,
            "server_default": server_default}


def test_phash_is_binary_hamming_on_the_server(indexed):
    vs = Catalog(indexed["server"]).vectors
    assert not vs.lite and vs.phash_binary
    fields = {f["name"]: f["type"] for f in vs.client.describe_collection(vs.phash)["fields"]}
    assert fields["code"] == DataType.BINARY_VECTOR
    idx = vs.client.describe_index(vs.phash, "code")
    assert idx["metric_type"] == "HAMMING" and idx["index_type"] == "BIN_FLAT"
    assert vs.client.describe_index(vs.frames, "vector")["metric_type"] == "IP"
    assert set(vs.client.list_indexes(vs.frames)) == {"vector", "video_id"}  # Trie on a 2.3 server
    vs.close()


def test_server_and_lite_index_and_search_alike(indexed):
    assert indexed["reports"]["server"].indexed == indexed["reports"]["lite"].indexed == 3
    server, lite = Catalog(indexed["server"]).vectors, Catalog(indexed["lite"]).vectors
    assert server.count() == lite.count() and server.video_ids() == lite.video_ids()
    feats = Catalog(indexed["lite"]).shards.load_features(lite.video_ids())
    step = lite.projection.frame_stride  # the rows the index holds (vectors.frame_stride)
    codes = np.concatenate([f.phash[::step] for f in feats.values()])
    frames = np.concatenate([f.embeddings[::step] for f in feats.values()])
    # Both pHash searches are exact (BIN_FLAT / brute force): same neighbours, same similarities.
    for s_row, l_row in zip(server.search_phash(codes, 3), lite.search_phash(codes, 3)):
        assert [round(x[2], 6) for x in s_row] == [round(x[2], 6) for x in l_row]
        assert s_row[0][2] == 1.0
    # Frames: a frame finds itself (cosine 1) on both; which of two identical frames comes first may
    # differ, so the ids are not compared.
    for s_row, l_row in zip(server.search_frames(frames, 1), lite.search_frames(frames, 1)):
        assert s_row[0][2] == pytest.approx(l_row[0][2], abs=1e-4) == pytest.approx(1.0, abs=1e-3)
    server.close()
    lite.close()


def test_search_finds_the_copy_through_the_server(indexed):
    query, matches = Searcher(indexed["server"]).search_file(str(indexed["query"]))
    assert matches and matches[0].source_uri.endswith("a.mp4")
    assert matches[0].label in ("duplicate", "near-duplicate"), matches[0]


def test_by_default_no_phash_collection_is_made_and_an_earlier_one_is_left_alone(indexed, milvus_uri):
    on = Catalog(indexed["server"]).vectors
    codes = on.count()["phash"]
    assert codes > 0 and on.phash_enabled
    on.close()
    fresh = VectorStore(milvus_uri, prefix="nophash", visual_dim=8, audio_dim=4)
    try:
        assert not fresh.phash_enabled and fresh.phash not in fresh.client.list_collections()
        assert fresh.count() == {"frames": 0, "phash": 0, "audio": 0}
    finally:
        for name in (fresh.frames, fresh.audio):
            fresh.client.drop_collection(name)
        fresh.close()
    # The same collections opened with the default: the pHash collection indexed earlier stays
    # as it was (readable, not written, not counted) until `reindex` drops it.
    vs = Catalog(indexed["server_default"]).vectors
    assert not vs.phash_enabled and vs.phash in vs.client.list_collections()
    assert vs.count()["phash"] == 0
    left = vs.client.query(vs.phash, filter="", output_fields=["count(*)"], consistency_level="Strong")
    assert int(left[0]["count(*)"]) == codes
    vs.close()


def test_server_scan_reads_the_rows_lite_holds(indexed):
    """``scan_vectors`` (the dedup job's local KNN index reads the library through it) pages a
    server's query iterator into the same rows a Lite file gives, whole or for a few videos."""
    def rows(cfg, kind, ids=None):
        cat = Catalog(cfg)
        scan = cat.vectors.scan_vectors(kind, ids)
        cat.vectors.close()
        order = np.lexsort((scan.times[:, 0], np.asarray(scan.names, object)[scan.owner].astype(str)))
        return [scan.names[o] for o in scan.owner[order]], scan.times[order], scan.vectors[order]

    ids = indexed["reports"]["server"].video_ids
    for kind in ("frames", "audio"):
        for want in (None, ids[:2]):
            s_names, s_times, s_vecs = rows(indexed["server"], kind, want)
            l_names, l_times, l_vecs = rows(indexed["lite"], kind, want)
            assert s_names == l_names and set(s_names) == set(want or ids)
            assert np.array_equal(s_times, l_times) and np.allclose(s_vecs, l_vecs, atol=1e-6)


def test_reindex_adds_nothing_and_delete_works_on_the_server(indexed):
    cfg = indexed["server"]
    cat = Catalog(cfg)
    before = cat.vectors.count()
    again = index([str(indexed["lib"])], cfg)
    assert again.indexed == 0 and again.skipped == 3 and cat.vectors.count() == before
    progress = cat.stats()["index"]  # `astradup stats`: rows each index serves, builds pending
    # a server counts the rows of sealed segments (a growing one is searched without an index)
    assert set(progress) == {"frames", "audio"}
    assert all(0 <= p["ready"] <= p["rows"] <= before[k] for k, p in progress.items())
    vid = indexed["reports"]["server"].video_ids[0]
    removed = cat.delete(vid)
    assert removed and sum(cat.vectors.count().values()) == sum(before.values()) - removed
    assert vid not in cat.vectors.video_ids()
    assert cat.reindex() == 2 and sum(cat.vectors.count().values()) == sum(before.values()) - removed
    cat.vectors.close()


def test_harness_writes_server_settings_into_the_config_it_starts_with(tmp_path):
    """``MilvusHarness(base, settings)`` (benchmarks/library_scale.py ``--milvus-set``): each dotted
    milvus.yaml key lands in the file the server reads, the other keys keep their defaults."""
    import yaml

    from tests.milvus_harness import MilvusHarness

    h = MilvusHarness(tmp_path, {"dataCoord.segment.maxSize": 200, "dataCoord.segment.sealProportion": 0.5})
    cfg = h.server.config
    try:
        cfg.resolve()
        cfg.write_config()
        seg = yaml.safe_load((tmp_path / "configs" / "milvus.yaml").read_text())["dataCoord"]["segment"]
    finally:
        cfg.cleanup_listen_ports()
    assert (seg["maxSize"], seg["sealProportion"]) == (200, 0.5)
    assert seg["diskSegmentMaxSize"] == 2048  # untouched
