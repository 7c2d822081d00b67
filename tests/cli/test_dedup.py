"""The dedup job (astradup/dedup/, jobs/dedup.py): a generated corpus indexed through the real
pipeline, then the self-join on Ray Data actors (one, on the Milvus Lite file): the planted copies
are found, a job killed after its first batch and re-run gives the same pairs, the Milvus KNN and
the local index give the same pairs, a video indexed later is the only one joined, a rejected verdict drops its pair, and the union-find holds many pairs."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest

from astradup.catalog import Catalog
from astradup.cli import main as cli_main
from astradup.config import load_config
from astradup.dedup.job import live_ids, run_job
from astradup.dedup.pairs import match_to_row
from astradup.dedup.results import dedup_groups, review_items
from astradup.dedup.store import Manifest, dedup_dir, read_pairs, write_part
from astradup.match.groups import UnionFind, components
from astradup.pipeline import index
from astradup.records import SegmentMatch, VideoMatch
from astradup.reviews import CONFIRMED, REJECTED, ReviewStore, Verdicts, pair_key
from tests.media import make_copy, make_video


def _index(cfg, paths):
    catalog = Catalog(cfg)
    rep = index([str(p) for p in paths], cfg, catalog=catalog)
    catalog.close_vectors()  # the job's worker opens the Lite file (one process per file)
    return rep


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """a + a re-encode, b + b flip (two pairs), one unrelated video; c (a copy of b) held back."""
    root = tmp_path_factory.mktemp("dedup")
    lib, later = root / "library", root / "later"
    lib.mkdir()
    later.mkdir()
    a = make_video(lib / "a.mp4", seconds=8, size=(320, 240), source="mandelbrot", audio="music", seed=1)
    b = make_video(lib / "b.mp4", seconds=8, size=(320, 240), source="life", audio="music", seed=2)
    make_copy(a, lib / "a_reencode.mp4", vf="scale=240:180", crf=30)
    make_copy(b, lib / "b_flip.mp4", vf="hflip", crf=30)
    make_video(lib / "unrelated.mp4", seconds=8, size=(320, 240), source="gradients", audio="noise", seed=9)
    make_copy(b, later / "b_later.mp4", crf=34)
    cfg = load_config(overrides={"data_dir": str(root / "data"),
                                 "pipeline": {"dashboard": False, "decode_concurrency": 1}})
    rep = _index(cfg, [lib])
    assert rep.indexed == 5 and not rep.failed, rep.summary()
    ids = {Path(u).name: v for v, u in live_ids(Catalog(cfg).shards).items()}
    return {"cfg": cfg, "root": root, "lib": lib, "later": later, "ids": ids}


@pytest.fixture(scope="module")
def full_run(corpus):
    """One uninterrupted job in batches of 2 (3 batches for 5 videos)."""
    t0 = time.time()
    s = run_job(corpus["cfg"], batch_size=2)
    print(f"\n[dedup] job over 5 videos: {time.time() - t0:.1f} s, {s.to_dict()}")
    return s


def test_job_finds_the_planted_copies(corpus, full_run):
    ids, cfg = corpus["ids"], corpus["cfg"]
    assert full_run.batches_total == 3 and full_run.batches_done == 3
    assert sorted(full_run.searched) == sorted(ids.values())
    man = Manifest.load(dedup_dir(cfg))
    assert len(man.batches) == 3 and man.joined() == set(ids.values())
    assert all((dedup_dir(cfg) / e["part"]).is_file() for e in man.batches.values())
    groups, best, uris, _ = dedup_groups(cfg, "near-duplicate", run=False)
    assert {frozenset(g) for g in groups} == {frozenset({ids["a.mp4"], ids["a_reencode.mp4"]}),
                                             frozenset({ids["b.mp4"], ids["b_flip.mp4"]})}
    assert all(ids["unrelated.mp4"] not in k for k in best)
    for (a, b), m in best.items():
        assert a < b and m.label in ("duplicate", "near-duplicate") and m.fused >= 0.85
    assert set(uris) == set(ids.values())
    # nothing new: a second run joins nothing
    again = run_job(cfg, batch_size=2)
    assert again.searched == [] and again.batches_total == 0


def test_killed_job_resumes_to_the_same_pairs(corpus, full_run):
    cfg = corpus["cfg"]
    other = dataclasses.replace(cfg, data_dir=str(corpus["root"] / "data_killed"),
                                shards_dir=cfg.resolved_shards_dir, milvus_uri=cfg.resolved_milvus_uri)

    class Killed(Exception):
        pass

    def kill_after_first(done, total):  # tick: after each batch is on disk (and once before any)
        if done:
            raise Killed(done)

    with pytest.raises(Killed):
        run_job(other, batch_size=2, tick=kill_after_first)
    first = Manifest.load(dedup_dir(other))
    assert len(first.batches) == 1  # one batch on disk, the rest never written
    resumed = run_job(other, batch_size=2)
    assert resumed.batches_total == 2 and set(resumed.searched) == set(corpus["ids"].values()) - first.joined()
    want = {k: (q, m.fused, m.label) for k, (q, m) in read_pairs(cfg).items()}
    got = {k: (q, m.fused, m.label) for k, (q, m) in read_pairs(other).items()}
    assert got == want and want


def test_milvus_knn_gives_the_local_indexs_pairs(corpus, full_run):
    """dedup.knn milvus (one server search per batch) and local (the default: dedup/local_knn.py)
    join the same library into the same pairs and scores."""
    cfg = corpus["cfg"]
    assert cfg.dedup.knn == "local" and (dedup_dir(cfg) / "knn" / "CURRENT").is_file()
    other = dataclasses.replace(cfg, data_dir=str(corpus["root"] / "data_milvus_knn"),
                                shards_dir=cfg.resolved_shards_dir, milvus_uri=cfg.resolved_milvus_uri,
                                dedup=dataclasses.replace(cfg.dedup, knn="milvus"))
    run_job(other, batch_size=2)
    assert not (dedup_dir(other) / "knn").exists()
    want = {k: (q, m.fused, m.label) for k, (q, m) in read_pairs(cfg).items()}
    got = {k: (q, m.fused, m.label) for k, (q, m) in read_pairs(other).items()}
    assert got == want and want


def test_rejected_verdict_removes_the_pair_from_dedup(corpus, full_run, capsys):
    cfg, ids = corpus["cfg"], corpus["ids"]
    a, a2 = ids["a.mp4"], ids["a_reencode.mp4"]
    store = ReviewStore(Path(cfg.data_dir) / "reviews.sqlite")
    try:
        store.record(a2, a, REJECTED, "not a copy")
        assert cli_main(["--data-dir", cfg.data_dir, "dedup", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        groups = {frozenset(v["video_id"] for v in g["videos"]) for g in out["groups"]}
        assert groups == {frozenset({ids["b.mp4"], ids["b_flip.mp4"]})}
        assert all({p["a"], p["b"]} != {a, a2} for g in out["groups"] for p in g["pairs"])
        rep = corpus["root"] / "report_rejected"
        assert cli_main(["--data-dir", cfg.data_dir, "report", "--out", str(rep), "--thumbs", "0", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["groups"] == 1
        csv_text = (rep / "report.csv").read_text()
        assert ids["b_flip.mp4"] in csv_text and a2 not in csv_text  # the rejected pair is not reported
        store.forget(a, a2)
        assert cli_main(["--data-dir", cfg.data_dir, "dedup", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert frozenset({a, a2}) in {frozenset(v["video_id"] for v in g["videos"]) for g in out["groups"]}
        pair = next(p for g in out["groups"] for p in g["pairs"] if {p["a"], p["b"]} == {a, a2})
        assert {"fused", "label", "confidence", "scores", "segments", "source_id"} <= set(pair)
    finally:
        store.close()


def test_new_video_alone_is_joined_and_pairs_with_the_library(corpus, full_run, capsys):
    cfg, ids = corpus["cfg"], corpus["ids"]
    rep = _index(cfg, [corpus["later"]])
    assert rep.indexed == 1
    new = rep.video_ids[0]
    # `astradup dedup` sees the job's output is stale and joins only the new video
    assert cli_main(["--data-dir", cfg.data_dir, "dedup", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    man = Manifest.load(dedup_dir(cfg))
    added = [e for e in man.batches.values() if new in e["ids"]]
    assert len(added) == 1 and added[0]["ids"] == [new] and len(man.batches) == 4
    groups = {frozenset(v["video_id"] for v in g["videos"]) for g in out["groups"]}
    assert frozenset({ids["b.mp4"], ids["b_flip.mp4"], new}) in groups, groups
    # the job's entry point (what `ray job submit` runs): nothing left to join
    from jobs.dedup import SUMMARY_TAG, main

    assert main(["--data-dir", cfg.data_dir]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(SUMMARY_TAG)
    summary = json.loads(last.split(" ", 1)[1])
    assert summary["searched"] == 0 and summary["live"] == 6 and summary["joined_before"] == 6


def _match(src: str, fused: float, conf: float, review: bool, label: str = "near-duplicate") -> VideoMatch:
    return VideoMatch(src, f"/v/{src[:4]}.mp4", {"visual": 0.9, "audio": 0.2, "metadata": 0.5}, fused, conf, label,
                      review, ("n",), (SegmentMatch("q", 0.0, 4.0, src, 1.0, 5.0, 0.8, ("visual",)),))


def test_review_queue_reads_the_jobs_low_confidence_pairs(tmp_path):
    cfg = load_config(overrides={"data_dir": str(tmp_path)})
    v = [f"{i:032x}" for i in range(1, 6)]
    root = dedup_dir(cfg)
    rows = [match_to_row(v[0], _match(v[1], 0.88, 0.40, True)),
            match_to_row(v[1], _match(v[0], 0.86, 0.45, True)),  # the other direction: the better one wins
            match_to_row(v[2], _match(v[3], 0.97, 0.90, False, "duplicate")),  # confident: not queued
            match_to_row(v[2], _match(v[4], 0.80, 0.30, True, "similar")),
            match_to_row(v[3], _match(v[4], 0.75, 0.20, True, "similar"))]  # decided below
    part = write_part(root, "b-test", rows)
    Manifest({"b-test": {"ids": v[:4], "part": part, "pairs": len(rows), "at": 0}}).save(root)
    live = {x: {"status": "ok", "uri": f"/v/{x[:4]}.mp4", "duration": 8.0} for x in v}
    items = review_items(cfg, live, Verdicts({pair_key(v[3], v[4]): CONFIRMED}))
    assert [(i["query_id"], i["source_id"]) for i in items] == [(v[2], v[4]), (v[0], v[1])]
    assert items[1]["fused"] == pytest.approx(0.88) and all(i["review"] for i in items)
    assert items[0]["segments"][0]["q_end"] == 4.0 and items[0]["duration"] == 8.0
    del live[v[4]]  # deleted since: its pairs leave the queue
    assert [(i["query_id"], i["source_id"]) for i in review_items(cfg, live, Verdicts())] == [(v[0], v[1])]


def _dict_components(pairs) -> list[list[str]]:
    """A second, plain-dict union-find (the one match/groups.py had before the numpy one replaced it):
    the oracle the numpy groups are checked against."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, list[str]] = {}
    for x in parent:
        groups.setdefault(find(x), []).append(x)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: (-len(g), g[0]))


def test_union_find_many_pairs():
    rng = np.random.default_rng(0)
    n, m = 2_000_000, 1_000_000
    a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    t0 = time.perf_counter()
    uf = UnionFind(n)
    uf.union_many(a, b)
    roots = uf.roots()
    took = time.perf_counter() - t0
    assert np.array_equal(roots[a], roots[b])  # every pair ends in one set
    assert np.array_equal(roots[roots], roots) and uf.find(int(a[0])) == roots[a[0]]
    assert took < 60, took
    # a long chain and a star are one component each; sizes add up
    uf = UnionFind(10)
    uf.union_many(np.arange(0, 5), np.arange(1, 6))
    uf.union_many(np.full(3, 7), np.array([8, 9, 7]))
    r = uf.roots()
    assert len(set(r[:6].tolist())) == 1 and len(set(r[7:].tolist())) == 1 and r[6] == 6 and r[0] != r[7]
    assert uf.size[r[0]] == 6 and uf.size[r[7]] == 3
    # string ids: the same groups as a plain dict-based union-find
    pairs = [(f"v{x}", f"v{y}") for x, y in rng.integers(0, 300, (400, 2)).tolist() if x != y]
    assert components([p[0] for p in pairs], [p[1] for p in pairs]) == _dict_components(pairs)
    assert components([], []) == []


def test_manifest_appends_and_ignores_a_line_torn_by_a_kill(tmp_path):
    from astradup.dedup.store import MANIFEST

    m = Manifest.load(tmp_path)
    m.append(tmp_path, "b-1", {"ids": ["x"], "part": "parts/b-1.parquet"})
    with open(tmp_path / MANIFEST, "ab") as f:
        f.write(b'{"batch": "b-2", "ids": ["y"')  # the driver died mid-append
    m = Manifest.load(tmp_path)
    assert set(m.batches) == {"b-1"} and m.joined() == {"x"}  # b-2 counts as not done: re-run
    m.append(tmp_path, "b-2", {"ids": ["y"], "part": "parts/b-2.parquet"})
    assert set(Manifest.load(tmp_path).batches) == {"b-1", "b-2"} and Manifest.load(tmp_path).joined() == {"x", "y"}


def test_batched_join_finds_what_one_search_per_video_finds(corpus, full_run):
    """Searcher.join_indexed (one KNN request per modality for a batch, the batch's own neighbours
    found in memory) against the old way, one search per video with its own rows excluded."""
    from astradup.search import Query, Searcher

    cfg, ids = corpus["cfg"], corpus["ids"]
    searcher = Searcher(cfg)
    try:
        feats = searcher.catalog.shards.load_features(list(ids.values()))
        batched = searcher.candidates_many(feats)
        for vid, f in feats.items():
            assert set(batched[vid]) == set(searcher.candidates(Query(f, None), exclude=vid)), vid
            assert vid not in batched[vid]
        pruned = searcher.candidates_many(feats, pruned=True)
        assert all(set(pruned[v]) <= set(batched[v]) for v in feats)
        assert ids["a_reencode.mp4"] in pruned[ids["a.mp4"]] and ids["b_flip.mp4"] in pruned[ids["b.mp4"]]
        joined = searcher.join_indexed(feats)
        for vid, f in feats.items():
            one = searcher.search(Query(f, None), exclude=vid, include_none=False)
            assert [(m.source_id, m.label, round(m.fused, 6)) for m in joined[vid]] == \
                   [(m.source_id, m.label, round(m.fused, 6)) for m in one], vid
            # what pruning leaves unscored could not have been listed: the unpruned search, filtered
            everything = searcher.search(Query(f, None), top=100, exclude=vid, include_none=True)
            listed = [m for m in everything if m.label != "none" or m.segments][: cfg.search.top]
            assert [(m.source_id, round(m.fused, 6)) for m in one] == [(m.source_id, round(m.fused, 6)) for m in listed]
    finally:
        searcher.catalog.close_vectors()
