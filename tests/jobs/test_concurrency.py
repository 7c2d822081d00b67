"""Concurrent use of one index: searches while writing, deletes while searching, overlapping writers.

Milvus Lite takes one process per ``.db`` file, so the in-process cases (a search thread while the
index writes, deletes while a thread searches, two threads upserting the same videos) run on Lite,
and the multi-process cases (two writer processes, two overlapping backfill jobs with searches
from a third process) run on a Milvus 2.3 server (``tests/milvus_harness.py``, one per module) with
Parquet shards in one shared local directory. Every case ends by counting rows per video: each
video's vectors exactly once, none lost.
"""
from __future__ import annotations

import json
import logging
import os
import posixpath
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from pymilvus import DataType, MilvusClient

from astradup.catalog import Catalog
from astradup.config import load_config
from astradup.features.embedder import get_embedder
from astradup.features.extract import add_embeddings, cpu_features
from astradup.io.decode import decode_video
from astradup.io.ids import content_id
from astradup.records import STATUS_OK, VideoFeatures, VideoRef
from astradup.search import Query, Searcher
from astradup.store import shard_names
from astradup.store.shards import ShardStore
from astradup.store.vectors import VectorStore
from tests.media import SOURCES, make_video
from tests.milvus_harness import milvus_server

ROOT = Path(__file__).resolve().parents[2]
D, DA = 16, 8  # small dims for the synthetic-vector cases


def synthetic(vid: str, seed: int, t: int = 20, w: int = 5) -> VideoFeatures:
    """A video record with random unit vectors: enough for store-level races, no decoding."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(t, D)).astype(np.float32)
    av = rng.normal(size=(w, DA)).astype(np.float32)
    starts = np.arange(w, dtype=np.float32) * 2
    return VideoFeatures(
        video_id=vid, uri=f"/v/{vid}.mp4", timestamps=np.arange(t, dtype=np.float32),
        embeddings=emb / np.linalg.norm(emb, axis=1, keepdims=True),
        phash=rng.integers(0, 256, size=(t, 32), dtype=np.uint8),
        audio_windows=np.stack([starts, starts + 5], axis=1),
        audio_vectors=av / np.linalg.norm(av, axis=1, keepdims=True),
        chromaprint=np.zeros((0,), np.uint32), chromaprint_hz=0.0, meta={})


def stored_rows(vectors, f: VideoFeatures) -> dict[str, int]:
    """Rows the vector store keeps for ``f``: after the catalog's projection (which may keep every
    n-th frame / window) when it has one, else one per frame and window."""
    proj = getattr(vectors, "projection", None)
    g = proj.reduce(f) if proj is not None else f
    t = len(np.asarray(g.timestamps).reshape(-1))
    phash = t if len(g.phash) and getattr(vectors, "phash_enabled", True) else 0  # none unless vectors.phash: on
    return {"frames": t, "phash": phash, "audio": len(np.asarray(g.audio_windows).reshape(-1, 2))}


def assert_each_video_once(vectors, feats: dict[str, VideoFeatures]) -> None:
    """Per video: row counts equal what one write of it stores, and no frame position twice."""
    assert vectors.video_ids() == set(feats)
    total = {"frames": 0, "phash": 0, "audio": 0}
    for vid, f in feats.items():
        want = stored_rows(vectors, f)
        assert vectors.count(vid) == want, vid
        t, _ = vectors.get_frames(vid)
        assert len(t) == len(np.unique(t)) == want["frames"]
        total = {k: total[k] + want[k] for k in total}
    assert vectors.count() == total


def _env(ray_address: str = "") -> dict[str, str]:
    """A child's environment; with ``ray_address`` its driver joins that cluster instead of starting
    a local Ray."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(ASTRADUP_PIPELINE__DASHBOARD="false", PYTHONPATH=str(ROOT))
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
    return env


# A start line for writer processes: each says it is ready (imports done, store open), then waits
# for "go", so their writes really overlap however long each took to start on a busy machine.
# A stage other than "ready" holds a process at a point the test wants to look at (``hold_at``).
BARRIER = """
import os, time
def ready_then_wait(gate, stage="ready", go="go"):
    open(gate + "." + stage + "." + str(os.getpid()), "w").close()
    while not os.path.exists(gate + "." + go):
        time.sleep(0.002)
"""


def start_together(code: str, argv: list[list[str]], gate: Path) -> list[subprocess.Popen]:
    """Start one process per argv running BARRIER + code; release them together once all are ready."""
    procs = [subprocess.Popen([sys.executable, "-c", BARRIER + code, str(gate), *a], cwd=ROOT, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for a in argv]
    hold_at(procs, gate, "ready")
    Path(str(gate) + ".go").touch()
    return procs


def hold_at(procs: list[subprocess.Popen], gate: Path, stage: str) -> None:
    """Wait until every process has reached ``ready_then_wait(gate, stage, ...)``; fail with their
    output if one exits or 180 s pass first."""
    deadline = time.time() + 180
    while len(list(gate.parent.glob(f"{gate.name}.{stage}.*"))) < len(procs):
        if time.time() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            pytest.fail(f"writer processes did not reach {stage!r}: " + " | ".join(
                (p.communicate()[0] or "")[-1500:] for p in procs))
        time.sleep(0.05)


# ------------------------------------------------------------------ real features, made once

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six short real videos and their features, computed in-process exactly as search does."""
    root = tmp_path_factory.mktemp("concurrency_corpus")
    cfg = load_config(overrides={"data_dir": str(root / "unused"), "pipeline": {"dashboard": False}})
    embedder = get_embedder(cfg.embedder)
    paths, feats = [], {}
    for i in range(6):
        p = make_video(root / f"v{i}.mp4", seconds=4, size=(160, 120), source=SOURCES[i], audio="music", seed=i)
        vid = content_id(str(p))
        dec = decode_video(str(p), VideoRef(vid, str(p), p.stat().st_size), cfg.decode)
        feats[vid] = add_embeddings(cpu_features(dec, cfg), dec.frames, embedder)
        paths.append(p)
    return {"root": root, "paths": paths, "feats": feats, "embedder": embedder}


def lite_catalog(corpus, tmp_path: Path) -> Catalog:
    cfg = load_config(overrides={"data_dir": str(tmp_path / "data"), "pipeline": {"dashboard": False}})
    cat = Catalog(cfg, embedder=corpus["embedder"])
    cat.vectors  # opened before any thread starts
    return cat


# ------------------------------------------------------------------ one process, Milvus Lite, threads

def test_searches_while_the_index_writes_never_fail_and_rows_end_exact(corpus, tmp_path):
    cat = lite_catalog(corpus, tmp_path)
    feats = list(corpus["feats"].values())
    searcher = Searcher(cat.cfg, cat)
    cat.write([feats[0]])
    written = [1]
    errors: list[BaseException] = []
    overlapped: list[int] = []  # writer progress seen by searches that ran mid-write
    done = threading.Event()
    searched = threading.Condition()

    def writer() -> None:
        try:
            for k, f in enumerate(feats[1:] + feats[:3]):  # every video, then three of them again (a re-index)
                cat.write([f])
                written[0] += 1
                if k < 3:
                    # the first writes wait for a search that began after them, so searches meet
                    # several states of the index however the threads are scheduled; later writes
                    # run on while searches go on
                    with searched:
                        if not searched.wait_for(lambda: written[0] in overlapped, timeout=120):
                            raise AssertionError(f"no search ran after write {written[0]}")
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    def search_loop() -> None:
        i = 0
        while not done.is_set():
            progress = written[0]
            q = feats[i % len(feats)]
            try:
                matches = searcher.search(Query(q, None))
            except BaseException as e:
                errors.append(e)
                return
            if progress < len(feats) + 3:  # the writer had not finished when this search began
                with searched:
                    overlapped.append(progress)
                    searched.notify_all()
            unknown = {m.source_id for m in matches} - set(corpus["feats"])
            if unknown:
                errors.append(AssertionError(f"matches of videos never written: {unknown}"))
            i += 1

    threads = [threading.Thread(target=writer), threading.Thread(target=search_loop)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors
    assert len(set(overlapped)) >= 2, overlapped  # searches really ran between several writes
    assert_each_video_once(cat.vectors, corpus["feats"])
    for vid, f in corpus["feats"].items():  # and every video finds itself once the writes are done
        assert searcher.search(Query(f, None))[0].source_id == vid
    cat.vectors.close()


def test_a_match_deleted_between_knn_and_scoring_is_dropped(corpus, tmp_path):
    cat = lite_catalog(corpus, tmp_path)
    feats = corpus["feats"]
    cat.write(list(feats.values()))
    searcher = Searcher(cat.cfg, cat)
    vid, f = next(iter(feats.items()))
    q = Query(f, None)
    cands = searcher.candidates(q)
    assert vid in cands
    assert cat.delete(vid) == sum(stored_rows(cat.vectors, f).values())
    matches = searcher.score(q, cands)  # the video vanished after the KNN: no KeyError, no match
    assert vid not in {m.source_id for m in matches} and matches
    assert cat.delete(vid) is None
    cat.vectors.close()


def test_deletes_while_searching_never_fail_nor_return_a_deleted_video(corpus, tmp_path):
    cat = lite_catalog(corpus, tmp_path)
    feats = corpus["feats"]
    cat.write(list(feats.values()))
    searcher = Searcher(cat.cfg, cat)
    doomed = list(feats)[:3]
    deleted_at: dict[str, float] = {}
    errors: list[BaseException] = []
    stale: list[tuple[str, float, float]] = []
    searches = [0]
    done = threading.Event()

    def search_loop() -> None:
        i = 0
        while not done.is_set():
            q = list(feats.values())[i % len(feats)]
            started = time.monotonic()
            try:
                matches = searcher.search(Query(q, None))
            except BaseException as e:
                errors.append(e)
                return
            for m in matches:
                gone = deleted_at.get(m.source_id)
                if gone is not None and gone < started:
                    stale.append((m.source_id, gone, started))
            searches[0] += 1
            i += 1

    t = threading.Thread(target=search_loop)
    t.start()
    try:
        for vid in doomed:
            before = searches[0]
            while searches[0] < before + 2 and t.is_alive():  # let searches run between deletes
                time.sleep(0.05)
            removed = cat.delete(vid)
            deleted_at[vid] = time.monotonic()
            assert removed == sum(stored_rows(cat.vectors, feats[vid]).values())
        before = searches[0]
        while searches[0] < before + 2 and t.is_alive():
            time.sleep(0.05)
    finally:
        done.set()
        t.join(timeout=120)
    assert not errors, errors
    assert not stale, stale
    status = cat.shards.latest_status()
    assert all(status[v]["status"] == "deleted" for v in doomed)
    assert_each_video_once(cat.vectors, {v: f for v, f in feats.items() if v not in doomed})
    cat.vectors.close()


def test_two_threads_upserting_the_same_videos_leave_each_row_once(tmp_path):
    vids = {f"v{i}": synthetic(f"v{i}", i) for i in range(8)}
    # phash="on": the pHash collection (a server's default; opt-in on Lite) is written too.
    with VectorStore(str(tmp_path / "m.db"), prefix="t", visual_dim=D, audio_dim=DA, phash="on") as store:
        errors: list[BaseException] = []

        def upserts() -> None:
            try:
                for _ in range(5):
                    store.upsert_many(list(vids.values()))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=upserts) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert_each_video_once(store, vids)
        # A re-index with fewer frames leaves exactly the new rows (the tail of the old is deleted).
        store.upsert_video(synthetic("v0", 99, t=7, w=2))
        assert store.count("v0") == {"frames": 7, "phash": 7, "audio": 2}


def test_collections_of_the_auto_id_layout_still_work_and_drop_all_rekeys_them(tmp_path, caplog):
    path = str(tmp_path / "m.db")
    client = MilvusClient(uri=path)
    for name, field, dim, extra in (("old_frames", "vector", D, ("t",)), ("old_phash", "code", 256, ("t",)),
                                    ("old_audio", "vector", DA, ("t_start", "t_end"))):
        schema = MilvusClient.create_schema(auto_id=True, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("video_id", DataType.VARCHAR, max_length=64)
        for x in extra:
            schema.add_field(x, DataType.FLOAT)
        schema.add_field(field, DataType.FLOAT_VECTOR, dim=dim)
        client.create_collection(name, schema=schema, consistency_level="Strong")
        params = client.prepare_index_params()
        params.add_index(field_name=field, index_type="AUTOINDEX", metric_type="IP")
        client.create_index(name, params)
    client.close()
    from milvus_lite.server_manager import server_manager_instance
    server_manager_instance.release_server(os.path.abspath(path))

    with caplog.at_level(logging.WARNING, logger="astradup.store"):
        store = VectorStore(path, prefix="old", visual_dim=D, audio_dim=DA, phash="on")
    assert any("auto-id" in r.getMessage() for r in caplog.records)
    try:
        f = synthetic("a", 1)
        store.upsert_video(f)
        store.upsert_video(f)  # the old layout's delete-then-insert still replaces
        assert store.count("a") == {"frames": 20, "phash": 20, "audio": 5}
        assert store.search_frames(f.embeddings[3], k=1)[0][0][:2] == ("a", 3.0)
        store.drop_all()  # what `astradup reindex` does first: the collections come back keyed
        fields = {x["name"]: x["type"] for x in store.client.describe_collection("old_frames")["fields"]}
        assert fields["id"] == DataType.VARCHAR and fields["row"] == DataType.INT32
        store.upsert_many([f, f])
        assert store.count("a") == {"frames": 20, "phash": 20, "audio": 5}
    finally:
        store.close()


# ------------------------------------------------------------------ Parquet shards, several writers

def test_two_writers_drawing_the_same_shard_name_keep_both_files(tmp_path, monkeypatch):
    real = shard_names.part_name
    clash = [0]

    def same_name_twice(us: int) -> str:
        clash[0] += 1  # the first two names drawn (one per writer) are the same; then real ones
        return "part-20260101T000000000000Z-0000abcd.parquet" if clash[0] <= 2 else real(us)

    monkeypatch.setattr(shard_names, "part_name", same_name_twice)
    a, b = ShardStore(str(tmp_path)), ShardStore(str(tmp_path))
    a.write_status([{"video_id": "x", "status": "ok", "uri": "a"}])
    b.write_status([{"video_id": "y", "status": "ok", "uri": "b"}])
    monkeypatch.undo()
    names = sorted(p.name for p in (tmp_path / "status").iterdir())
    assert len(names) == 2 and "part-20260101T000000000000Z-0000abcd.parquet" in names, names
    status = ShardStore(str(tmp_path)).latest_status()
    assert {v: r["uri"] for v, r in status.items()} == {"x": "a", "y": "b"}


STATUS_WRITER = """
import sys
from astradup.store.shards import ShardStore
gate, root, tag, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = ShardStore(root)
ready_then_wait(gate)
for i in range(n):
    if i == n // 2:
        ready_then_wait(gate, "half", "resume")  # the test's follower looks at a half-written root
    store.write_status([{"video_id": f"v{j}", "uri": f"{tag}/{i}/{j}",
                         "status": ("ok", "failed", "deleted")[(i + j) % 3]} for j in range(8)])
"""


def test_status_rows_of_two_writer_processes_are_all_kept_and_every_reader_agrees(tmp_path):
    n = 150
    root = tmp_path / "shards"
    follower = ShardStore(str(root))  # refreshes incrementally while the files appear
    gate = tmp_path / "gate"
    procs = start_together(STATUS_WRITER, [[str(root), tag, str(n)] for tag in ("A", "B")], gate)
    # Both writers stop half-way, so the follower's refresh of a partly written root is certain
    # however slow the machine; then it keeps refreshing while they finish.
    hold_at(procs, gate, "half")
    follower.latest_status()
    assert follower.stats()["status_shards"] == 2 * (n // 2)
    Path(str(gate) + ".resume").touch()
    while any(p.poll() is None for p in procs):
        follower.latest_status()
    for p in procs:
        assert p.wait() == 0, p.stdout.read()

    # Every row of both writers is on disk.
    files = sorted((root / "status").glob("part-*.parquet"))
    rows = []
    for path in files:
        for i, r in enumerate(pq.read_table(path).to_pylist()):
            rows.append(((int(r["at"].timestamp() * 1e6), posixpath.basename(str(path)), i), r))
    assert len(files) == 2 * n
    assert sorted(r["uri"] for _, r in rows) == sorted(f"{t}/{i}/{j}" for t in "AB" for i in range(n) for j in range(8))
    # The latest row per video by (at, file name, row), computed by brute force here...
    latest: dict[str, tuple] = {}
    for key, r in rows:
        if r["video_id"] not in latest or latest[r["video_id"]][0] < key:
            latest[r["video_id"]] = (key, r)
    want = {v: (r["uri"], r["status"]) for v, (_, r) in latest.items()}
    # ... is what a fresh reader and the reader that followed the writes both say.
    for reader in (ShardStore(str(root)), follower):
        got = {v: (r["uri"], r["status"]) for v, r in reader.latest_status().items()}
        assert got == want


# ------------------------------------------------------------------ several processes, Milvus server

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from milvus_server(tmp_path_factory, "concurrency_milvus")


RACE_WRITER = """
import sys
from astradup.store.vectors import VectorStore
from tests.jobs.test_concurrency import D, DA, synthetic
gate, uri, prefix, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
vids = [synthetic(f"v{i}", i) for i in range(10)]
ready_then_wait(gate)
with VectorStore(uri, prefix=prefix, visual_dim=D, audio_dim=DA) as store:  # both create the collections
    for _ in range(rounds):
        store.upsert_many(vids)
"""


def test_two_processes_upserting_the_same_videos_leave_each_row_once(server, tmp_path):
    # Before per-row keys this ended with every row twice: both deletes ran, then both inserts.
    # Both processes open the store at once on a fresh prefix, so they also race to create it.
    procs = start_together(RACE_WRITER, [[server.uri, "race", "6"]] * 2, tmp_path / "gate")
    for p in procs:
        out, _ = p.communicate(timeout=180)
        assert p.returncode == 0, out[-3000:]
    with VectorStore(server.uri, prefix="race", visual_dim=D, audio_dim=DA) as store:
        assert_each_video_once(store, {f"v{i}": synthetic(f"v{i}", i) for i in range(10)})


def test_two_overlapping_backfills_and_a_searcher_end_with_each_video_once(corpus, server, tmp_path, ray_head):
    paths = corpus["paths"]
    shards = tmp_path / "shards"
    jobs = {"A": paths[:4], "B": paths[2:]}  # v2 and v3 are in both
    procs = {}
    for tag, srcs in jobs.items():
        args = [sys.executable, "-m", "jobs.backfill", *(x for p in srcs for x in ("--source", str(p))),
                "--shards", str(shards), "--milvus-uri", server.uri, "--collection-prefix", "bf",
                "--data-dir", str(tmp_path / f"data_{tag}"), "--write-batch", "1", "--decode-concurrency", "1",
                "--summary-json", str(tmp_path / f"{tag}.json")]
        # Two drivers on one cluster, as two `ray job submit` backfills would be.
        procs[tag] = subprocess.Popen(args, cwd=ROOT, env=_env(ray_head), start_new_session=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _search_during_backfills(corpus, server, tmp_path, shards, jobs, procs)
    finally:
        for p in procs.values():  # a driver still running when the test fails: reap it by group
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _search_during_backfills(corpus, server, tmp_path: Path, shards: Path, jobs: dict, procs: dict) -> None:
    # This process searches the same index (server + shared shards) while both jobs write.
    cfg = load_config(overrides={"data_dir": str(tmp_path / "data_search"), "shards_dir": str(shards),
                                 "milvus_uri": server.uri, "collection_prefix": "bf",
                                 "pipeline": {"dashboard": False}})
    cat = Catalog(cfg, embedder=corpus["embedder"])
    searcher = Searcher(cfg, cat)
    errors, searches, seen = [], 0, set()
    feats = list(corpus["feats"].values())
    while any(p.poll() is None for p in procs.values()):
        try:
            matches = searcher.search(Query(feats[searches % len(feats)], None))
            seen.update(m.source_id for m in matches)
        except Exception as e:  # collected, not raised: the jobs must still be waited for
            errors.append(e)
        searches += 1
        time.sleep(0.1)
    outs = {tag: p.communicate()[0] for tag, p in procs.items()}
    for tag, p in procs.items():
        assert p.returncode == 0, outs[tag][-4000:]
    assert not errors, errors[:3]
    assert searches >= 3 and seen <= set(corpus["feats"])

    summaries = {tag: json.loads((tmp_path / f"{tag}.json").read_text()) for tag in jobs}
    assert all(not s["failed"] for s in summaries.values())
    assert summaries["A"]["indexed"] + summaries["A"]["skipped"] == 4
    assert summaries["B"]["indexed"] + summaries["B"]["skipped"] == 4
    # Status rows of both jobs are kept: one ok row per video each job indexed.
    status_rows = [r for path in sorted((shards / "status").glob("part-*.parquet"))
                   for r in pq.read_table(path).to_pylist()]
    assert len(status_rows) == summaries["A"]["indexed"] + summaries["B"]["indexed"]
    assert {r["video_id"] for r in status_rows} == set(corpus["feats"])
    latest = cat.shards.latest_status()
    assert set(latest) == set(corpus["feats"]) and all(r["status"] == STATUS_OK for r in latest.values())
    assert_each_video_once(cat.vectors, corpus["feats"])
    for vid, f in corpus["feats"].items():
        assert searcher.search(Query(f, None))[0].source_id == vid
    cat.vectors.close()
