"""Reviewers' verdicts on every path that lists matches or pairs: ``astradup search`` (text, JSON,
CSV, --segments in each), ``dedup``, ``report``, the backfill's ``--report`` and the HTTP service's
search. One small corpus is indexed once through the real pipeline and joined once; the pair
a ~ a_reencode is rejected and b ~ b_flip confirmed, and every path must leave the first out
and mark the second. The rule itself (reviews.Verdicts) is checked on hand-made matches."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from astradup.catalog import Catalog
from astradup.cli import main as cli_main
from astradup.config import load_config
from astradup.dedup.job import live_ids, run_job
from astradup.errors import AstraDupError
from astradup.pipeline import index
from astradup.records import SegmentMatch, VideoMatch
from astradup.reviews import CONFIRMED, REJECTED, ReviewStore, Verdicts, reviews_path
from tests.media import make_copy, make_video


def _vm(src: str, fused: float = 0.9, decision: str | None = None) -> VideoMatch:
    return VideoMatch(src, f"/v/{src[:4]}.mp4", {"visual": 0.9, "audio": 0.5, "metadata": 0.5}, fused, 0.8,
                      "near-duplicate", False, (), (SegmentMatch("q", 0.0, 4.0, src, 0.0, 4.0, 0.9, ("visual",)),),
                      decision=decision)


V = [f"{i:032x}" for i in range(1, 6)]


def test_verdicts_drop_rejected_either_way_and_mark_confirmed():
    verdicts = Verdicts({f"{V[0]}:{V[1]}": REJECTED, f"{V[0]}:{V[2]}": CONFIRMED, f"{V[3]}:{V[4]}": REJECTED})
    ranked = [_vm(V[1], 0.99), _vm(V[2], 0.95), _vm(V[3], 0.90), _vm(V[4], 0.85)]
    got = verdicts.matches(V[0], ranked)
    assert [m.source_id for m in got] == [V[2], V[3], V[4]]
    assert [m.decision for m in got] == [CONFIRMED, None, None]
    assert got[0].to_dict()["decision"] == CONFIRMED and got[1].to_dict()["decision"] is None
    # the pair key is unordered: the search from the other side drops and marks the same pairs
    assert verdicts.apply(V[1], _vm(V[0])) is None and verdicts.apply(V[2], _vm(V[0])).decision == CONFIRMED
    assert verdicts.apply(V[4], _vm(V[3])) is None
    assert [m.source_id for m in verdicts.matches(V[0], ranked, top=1)] == [V[2]]  # top counts listed ones
    assert verdicts.rejected_count() == 2 and len(verdicts) == 3
    assert Verdicts().matches(V[0], ranked) == ranked


def test_verdicts_load_reads_the_data_dirs_store_and_refuses_a_damaged_file(tmp_path):
    assert len(Verdicts.load(tmp_path)) == 0
    assert not reviews_path(tmp_path).exists()  # reading creates nothing
    store = ReviewStore(reviews_path(tmp_path))
    try:
        store.record(V[1], V[0], REJECTED)
        store.record(V[2], V[3], CONFIRMED)
    finally:
        store.close()
    everything = Verdicts.load(tmp_path)
    assert everything.rejected(V[0], V[1]) and everything.decision(V[3], V[2]) == CONFIRMED
    only_v0 = Verdicts.load(tmp_path, video_id=V[0])
    assert only_v0.rejected(V[1], V[0]) and only_v0.decision(V[2], V[3]) is None and len(only_v0) == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    reviews_path(bad).write_bytes(b"this is not a SQLite database, only hostile bytes" * 40)
    with pytest.raises(AstraDupError, match="reviews.sqlite"):
        Verdicts.load(bad)


# ---------------------------------------------------------------- every path, on one indexed corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """a + a re-encode (rejected by a reviewer), b + b flip (confirmed), one unrelated video;
    indexed, joined in this process, verdicts recorded."""
    root = tmp_path_factory.mktemp("verdicts")
    lib = root / "library"
    lib.mkdir()
    a = make_video(lib / "a.mp4", seconds=8, size=(320, 240), source="mandelbrot", audio="music", seed=1)
    b = make_video(lib / "b.mp4", seconds=8, size=(320, 240), source="life", audio="music", seed=2)
    make_copy(a, lib / "a_reencode.mp4", vf="scale=240:180", crf=30)
    make_copy(b, lib / "b_flip.mp4", vf="hflip", crf=30)
    make_video(lib / "unrelated.mp4", seconds=8, size=(320, 240), source="gradients", audio="noise", seed=9)
    cfg = load_config(overrides={"data_dir": str(root / "data"),
                                 "pipeline": {"dashboard": False, "decode_concurrency": 1}})
    catalog = Catalog(cfg)
    rep = index([str(lib)], cfg, catalog=catalog)
    assert rep.indexed == 5 and not rep.failed, rep.summary()
    from astradup.search import Searcher

    run_job(cfg, searcher=Searcher(cfg, catalog))  # in this process: no Ray actor holds the Lite file after
    catalog.close_vectors()
    ids = {Path(u).name: v for v, u in live_ids(catalog.shards).items()}
    store = ReviewStore(reviews_path(cfg.data_dir))
    try:
        store.record(ids["a_reencode.mp4"], ids["a.mp4"], REJECTED, "not a copy")
        store.record(ids["b.mp4"], ids["b_flip.mp4"], CONFIRMED)
    finally:
        store.close()
    return {"cfg": cfg, "lib": lib, "root": root, "ids": ids}


def _cli(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert cli_main(list(argv)) == 0
    return capsys.readouterr().out


def test_the_corpus_has_both_pairs_without_verdicts(corpus):
    """Without the verdicts both pairs are grouped: what the other tests see missing, a verdict removed."""
    cfg, ids = corpus["cfg"], corpus["ids"]
    from astradup.dedup.results import dedup_groups

    groups, best, _, _ = dedup_groups(cfg, "near-duplicate", run=False, verdicts=Verdicts())
    assert {frozenset(g) for g in groups} >= {frozenset({ids["a.mp4"], ids["a_reencode.mp4"]}),
                                              frozenset({ids["b.mp4"], ids["b_flip.mp4"]})}
    assert all(m.decision is None for m in best.values())


def test_search_leaves_the_rejected_pair_out_and_marks_the_confirmed_one(corpus, capsys):
    cfg, ids, lib = corpus["cfg"], corpus["ids"], corpus["lib"]
    base = ["--quiet", "--data-dir", cfg.data_dir, "search"]
    a, a2, b, b2 = ids["a.mp4"], ids["a_reencode.mp4"], ids["b.mp4"], ids["b_flip.mp4"]
    # the rejected pair, from either side, in every output form
    for query, other in ((lib / "a_reencode.mp4", a), (lib / "a.mp4", a2)):
        out = json.loads(_cli(capsys, *base, str(query), "--json", "--top", "5"))
        assert out["matches"] and other not in {m["source_id"] for m in out["matches"]}
        assert other[:12] not in _cli(capsys, *base, str(query), "--top", "5")  # text shows 12 characters
        assert other not in _cli(capsys, *base, str(query), "--csv", "--top", "5")
        seg = json.loads(_cli(capsys, *base, str(query), "--segments", "--json", "--top", "5"))
        assert other not in {r["source_id"] for r in seg["segments"]}
        assert other not in _cli(capsys, *base, str(query), "--segments", "--csv", "--top", "5")
        assert other[:12] not in _cli(capsys, *base, str(query), "--segments", "--top", "5")
    # the confirmed pair, marked in every output form
    query = str(lib / "b_flip.mp4")
    out = json.loads(_cli(capsys, *base, query, "--json", "--top", "5"))
    by_src = {m["source_id"]: m for m in out["matches"]}
    assert by_src[b]["decision"] == CONFIRMED
    assert all(m["decision"] is None for s, m in by_src.items() if s != b)
    rows = list(csv.DictReader(io.StringIO(_cli(capsys, *base, query, "--csv", "--top", "5"))))
    assert {r["source_id"]: r["decision"] for r in rows}[b] == CONFIRMED
    assert all(r["decision"] == "" for r in rows if r["source_id"] != b)
    text = _cli(capsys, *base, query, "--top", "5")
    assert [line for line in text.splitlines() if "[confirmed]" in line] == \
        [line for line in text.splitlines() if b[:12] in line]
    segs = list(csv.DictReader(io.StringIO(_cli(capsys, *base, query, "--segments", "--csv", "--top", "5"))))
    assert segs and {r["decision"] for r in segs if r["source_id"] == b} == {CONFIRMED}
    seg = json.loads(_cli(capsys, *base, query, "--segments", "--json", "--top", "5"))
    assert {r["decision"] for r in seg["segments"] if r["source_id"] == b} == {CONFIRMED}
    assert "[confirmed]" in _cli(capsys, *base, query, "--segments", "--top", "5")


def test_dedup_leaves_the_rejected_pair_out_and_marks_the_confirmed_one(corpus, capsys):
    cfg, ids = corpus["cfg"], corpus["ids"]
    a, a2, b, b2 = ids["a.mp4"], ids["a_reencode.mp4"], ids["b.mp4"], ids["b_flip.mp4"]
    for label in ("near-duplicate", "similar"):
        out = json.loads(_cli(capsys, "--quiet", "--data-dir", cfg.data_dir, "dedup", "--json", "--min-label", label))
        pairs = [p for g in out["groups"] for p in g["pairs"]]
        assert all({p["a"], p["b"]} != {a, a2} for p in pairs)
        assert all({p["video_id"], p["source_id"]} != {a, a2} for p in out["partial_copies"])
        confirmed = [p for p in pairs if {p["a"], p["b"]} == {b, b2}]
        assert len(confirmed) == 1 and confirmed[0]["decision"] == CONFIRMED
        assert all(p["decision"] is None for p in pairs if p is not confirmed[0])
    text = _cli(capsys, "--quiet", "--data-dir", cfg.data_dir, "dedup")
    assert not any(a[:12] in line and a2[:12] in line for line in text.splitlines())
    marked = [line for line in text.splitlines() if "[confirmed]" in line]
    assert len(marked) == 1 and b[:12] in marked[0] and b2[:12] in marked[0]


def _report_checks(out_dir: Path, ids: dict[str, str]) -> None:
    a, a2, b, b2 = ids["a.mp4"], ids["a_reencode.mp4"], ids["b.mp4"], ids["b_flip.mp4"]
    with open(out_dir / "report.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and all({r["video_a_id"], r["video_b_id"]} != {a, a2} for r in rows)
    by_pair = {frozenset((r["video_a_id"], r["video_b_id"])): r["decision"] for r in rows}
    assert by_pair[frozenset((b, b2))] == CONFIRMED
    assert all(d == "" for k, d in by_pair.items() if k != frozenset((b, b2)))
    page = (out_dir / "report.html").read_text("utf-8")
    assert f'data-a="{min(a, a2)}" data-b="{max(a, a2)}"' not in page
    row = page.split(f'data-a="{min(b, b2)}" data-b="{max(b, b2)}"', 1)[1].split("</tr>", 1)[0]
    assert '<span class="verdict confirmed">confirmed</span>' in row
    assert page.count('class="verdict confirmed"') == 1


def test_report_leaves_the_rejected_pair_out_and_marks_the_confirmed_one(corpus, capsys):
    cfg = corpus["cfg"]
    out_dir = corpus["root"] / "report"
    summary = json.loads(_cli(capsys, "--quiet", "--data-dir", cfg.data_dir, "report", "--out", str(out_dir),
                              "--thumbs", "0", "--json"))
    assert summary["confirmed_pairs"] == 1
    _report_checks(out_dir, corpus["ids"])


def test_backfill_report_leaves_the_rejected_pair_out_and_marks_the_confirmed_one(corpus, capsys):
    from jobs.backfill import SUMMARY_TAG, main

    cfg = corpus["cfg"]
    out_dir = corpus["root"] / "backfill_report"
    assert main(["--source", str(corpus["lib"]), "--data-dir", cfg.data_dir, "--report", str(out_dir)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last.split(" ", 1)[1])
    assert last.startswith(SUMMARY_TAG) and summary["skipped"] == 5 and summary["report"]["confirmed_pairs"] == 1
    _report_checks(out_dir, corpus["ids"])


def test_service_search_leaves_the_rejected_pair_out_and_marks_the_confirmed_one(corpus):
    """SearchService's own methods (no Ray Serve): by video id and by upload."""
    from astradup.search import Searcher
    from serve.search_service import SearchService
    from serve.settings import ServeSettings
    from serve.slots import DecodeSlots

    cfg, ids = corpus["cfg"], corpus["ids"]
    cls = SearchService.func_or_class
    svc = cls.__new__(cls)
    svc.cfg, svc.settings = cfg, ServeSettings()
    svc.catalog = Catalog(cfg)
    svc.searcher = Searcher(cfg, svc.catalog)
    svc.reviews = ReviewStore(reviews_path(cfg.data_dir))
    svc.decodes = DecodeSlots(svc.settings.decode_slots, svc.settings.decode_retry_after_s)
    try:
        a, a2, b, b2 = ids["a.mp4"], ids["a_reencode.mp4"], ids["b.mp4"], ids["b_flip.mp4"]
        for query, other in ((a, a2), (a2, a)):
            got = svc.search_video(query, 5)
            assert "error" not in got and other not in {m["source_id"] for m in got["matches"]}
        got = svc.search_video(b2, 5)
        by_src = {m["source_id"]: m for m in got["matches"]}
        assert by_src[b]["decision"] == CONFIRMED and all(m["decision"] is None for s, m in by_src.items() if s != b)
        up = svc.search_upload((corpus["lib"] / "a_reencode.mp4").read_bytes(), "MP4", 5)
        assert "error" not in up and up["matches"] and a not in {m["source_id"] for m in up["matches"]}
        up = svc.search_upload((corpus["lib"] / "b.mp4").read_bytes(), "MP4", 5)
        assert {m["source_id"]: m["decision"] for m in up["matches"]}[b2] == CONFIRMED
    finally:
        svc.reviews.close()
        svc.catalog.close_vectors()


def test_cli_refuses_a_damaged_verdicts_file_and_a_bad_top_in_one_line(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    reviews_path(data).write_bytes(b"\x00garbage, not SQLite\xff" * 100)
    assert cli_main(["--quiet", "--data-dir", str(data), "dedup", "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("astradup: error:") and "reviews.sqlite" in err[0]
    for top in ("0", "-3"):
        assert cli_main(["--quiet", "--data-dir", str(data), "search", str(tmp_path / "q.mp4"), "--top", top]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--top must be >= 1" in err[0]
