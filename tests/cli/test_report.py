"""`astradup report`: a generated corpus indexed through the real pipeline (Ray Data, Parquet shards,
Milvus Lite), then the HTML + CSV report: the groups are dedup's groups, copies are grouped and the
unrelated video is not, intervals are there, uris are escaped, a vanished file gets a placeholder,
and the page, opened in Debian's chromium (headless, Playwright), really shows something."""
from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from astradup.cli import main as cli_main
from astradup.config import load_config
from astradup.pipeline import index
from astradup.records import SegmentMatch, VideoMatch
from astradup.report.data import PairEntry, ReportData, VideoEntry, normalise_label
from astradup.report.page import render_html
from astradup.report.table import CSV_FIELDS
from astradup.report.thumbs import make_thumbs, thumb_times
from tests.media import make_copy, make_video

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO_SHOT = Path(__file__).resolve().parents[2] / "benchmarks" / "out" / "report_screenshot.png"
REPO_TIMELINE_SHOT = REPO_SHOT.with_name("report_timeline.png")
SPECIAL = 'a flip <b>&"x\'.mp4'  # a legal file name that breaks any HTML that forgets to escape


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """a + a re-encode + a flip (a group of three), b + b re-encode (a pair), one unrelated video."""
    root = tmp_path_factory.mktemp("report")
    lib = root / "library"
    lib.mkdir()
    a = make_video(lib / "a.mp4", seconds=8, size=(320, 240), source="mandelbrot", audio="music", seed=1)
    b = make_video(lib / "b.mp4", seconds=8, size=(320, 240), source="life", audio="music", seed=2)
    make_copy(a, lib / "a_reencode.mp4", vf="scale=240:180", codec="mpeg4")
    make_copy(a, lib / SPECIAL, vf="hflip", crf=30)
    make_copy(b, lib / "b_reencode.mp4", crf=32)
    make_video(lib / "unrelated.mp4", seconds=8, size=(320, 240), source="gradients", audio="noise", seed=9)
    cfg = load_config(overrides={"data_dir": str(root / "data"),
                                 "pipeline": {"dashboard": False, "decode_concurrency": 1}})
    from astradup.catalog import Catalog

    catalog = Catalog(cfg)
    rep = index([str(lib)], cfg, catalog=catalog)
    catalog.close_vectors()  # `astradup report` runs the dedup job, whose worker opens the Lite file
    assert rep.indexed == 6 and not rep.failed, rep.summary()
    ids = {Path(u).name: v for u, v in _uris(cfg).items()}
    return {"cfg": cfg, "lib": lib, "root": root, "ids": ids}


def _uris(cfg) -> dict[str, str]:
    from astradup.catalog import Catalog

    return {r["uri"]: vid for vid, r in Catalog(cfg).shards.latest_status().items() if r["status"] == "ok"}


@pytest.fixture(scope="module")
def report(corpus, tmp_path_factory):
    """`astradup report --json` run once through the CLI; its summary, CSV rows and HTML."""
    out = tmp_path_factory.mktemp("report_out")
    cfg = corpus["cfg"]
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli_main(["--data-dir", cfg.data_dir, "report", "--out", str(out), "--min-label", "near_duplicate",
                       "--json"])
    assert rc == 0
    summary = json.loads(buf.getvalue())
    with open(out / "report.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {"out": out, "summary": summary, "rows": rows, "html": (out / "report.html").read_text("utf-8")}


def _csv_groups(rows) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for r in rows:
        groups.setdefault(r["group_id"], set()).update((r["video_a_id"], r["video_b_id"]))
    return {frozenset(g) for g in groups.values()}


def test_csv_groups_the_copies_and_leaves_the_unrelated_out(corpus, report):
    ids, rows = corpus["ids"], report["rows"]
    assert rows and list(rows[0]) == list(CSV_FIELDS)
    groups = _csv_groups(rows)
    assert frozenset({ids["a.mp4"], ids["a_reencode.mp4"], ids[SPECIAL]}) in groups
    assert frozenset({ids["b.mp4"], ids["b_reencode.mp4"]}) in groups
    assert len(groups) == 2
    assert all(ids["unrelated.mp4"] not in (r["video_a_id"], r["video_b_id"]) for r in rows)
    assert "unrelated.mp4" not in report["html"]
    for r in rows:
        assert r["label"] in ("duplicate", "near-duplicate"), r
        assert 0.85 <= float(r["fused"]) <= 1.0 and 0.0 <= float(r["confidence"]) <= 1.0
        assert r["review"] in ("true", "false") and float(r["visual"]) > 0.5
        assert r["video_a_id"] < r["video_b_id"] and r["interval_query_id"] in (r["video_a_id"], r["video_b_id"])
        names = {Path(r["video_a_uri"]).name, Path(r["video_b_uri"]).name}
        assert {corpus["ids"][n] for n in names} == {r["video_a_id"], r["video_b_id"]}
    # a whole-video copy is localised: one interval per side covering most of the 8 s
    pair = next(r for r in rows if {r["video_a_id"], r["video_b_id"]} == {ids["b.mp4"], ids["b_reencode.mp4"]})
    q0, q1 = map(float, pair["query_intervals"].split(";")[0].split("-"))
    s0, s1 = map(float, pair["source_intervals"].split(";")[0].split("-"))
    assert q1 - q0 >= 5 and s1 - s0 >= 5, pair
    assert len(pair["query_intervals"].split(";")) == len(pair["interval_scores"].split(";"))


def test_report_groups_are_dedups_groups(corpus, report, capsys):
    cfg = corpus["cfg"]
    assert cli_main(["--data-dir", cfg.data_dir, "dedup", "--min-label", "near-duplicate", "--json"]) == 0
    dedup = json.loads(capsys.readouterr().out)
    assert {frozenset(v["video_id"] for v in g["videos"]) for g in dedup["groups"]} == _csv_groups(report["rows"])
    s = report["summary"]
    assert (s["groups"], s["pairs"], s["indexed_videos"], s["grouped_videos"]) == (2, len(report["rows"]), 6, 5)
    assert s["min_label"] == "near-duplicate" and s["missing_files"] == []


def test_html_shows_groups_scores_intervals_and_escapes_uris(corpus, report):
    page, rows, lib = report["html"], report["rows"], corpus["lib"]
    assert page.count('<section class="group" id="group-') == 2
    assert "Group 1: 3 videos" in page and "Group 2: 2 videos" in page
    for r in rows:
        assert f'data-a="{r["video_a_id"]}" data-b="{r["video_b_id"]}"' in page
        assert f"{float(r['fused']):.3f}" in page
        if not r["query_intervals"]:  # a pair judged on whole-video evidence, no interval aligned
            row = page.split(f'data-a="{r["video_a_id"]}" data-b="{r["video_b_id"]}"', 1)[1].split("</tr>", 1)[0]
            assert "no interval localised" in row
            continue
        for q, s in zip(r["query_intervals"].split(";"), r["source_intervals"].split(";")):
            q0, q1 = q.split("-")
            s0, s1 = s.split("-")
            assert f"{q0}&ndash;{q1} s &larr;" in page and f"{s0}&ndash;{s1} s" in page, (q, s)
    special_uri = str(lib / SPECIAL)
    assert html.escape(special_uri, quote=True) in page
    assert special_uri not in page and "<b>&" not in page  # the raw name never reaches the markup
    assert "http://" not in page and "https://" not in page  # self-contained: nothing to fetch
    assert "<script" not in page


def test_thumbnails_are_real_frames_of_each_grouped_video(corpus, report):
    out = report["out"]
    thumbs = sorted(t for t in (out / "thumbs").glob("*.jpg") if "_at" not in t.name)  # spread over each video
    assert len(thumbs) == 5 * 3 == report["summary"]["thumbnails"]
    for t in thumbs:
        assert f'src="thumbs/{t.name}"' in report["html"]
        with Image.open(t) as im:
            assert im.format == "JPEG" and im.size[0] == 240
            assert np.asarray(im.convert("L"), dtype=np.float32).std() > 5  # a picture, not a flat fill
    a_first = np.asarray(Image.open(out / "thumbs" / f"{corpus['ids']['a.mp4']}_0.jpg").convert("L"), np.float32)
    b_first = np.asarray(Image.open(out / "thumbs" / f"{corpus['ids']['b.mp4']}_0.jpg").convert("L"), np.float32)
    assert np.abs(a_first - b_first).mean() > 10  # each video's own frames


def test_each_pair_has_a_timeline_and_frames_where_its_intervals_start(corpus, report):
    out, page, rows = report["out"], report["html"], report["rows"]
    moments = sorted((out / "thumbs").glob("*_at*.jpg"))
    assert len(moments) == report["summary"]["moment_thumbnails"] > 0
    for t in moments:
        assert f'src="thumbs/{t.name}"' in page
        with Image.open(t) as im:
            assert im.format == "JPEG" and im.size[0] == 240
    for r in rows:
        if not r["query_intervals"]:
            continue
        block = page.split(f'<tr class="pictures" data-a="{r["video_a_id"]}" data-b="{r["video_b_id"]}"', 1)[1]
        block = block.split("</tr>", 1)[0]
        n = len(r["query_intervals"].split(";"))
        assert block.count('class="iv iv-a"') == block.count('class="iv iv-b"') == n
        q = r["interval_query_id"]
        s = r["video_b_id"] if q == r["video_a_id"] else r["video_a_id"]
        q0 = float(r["query_intervals"].split(";")[0].split("-")[0])
        s0 = float(r["source_intervals"].split(";")[0].split("-")[0])
        # the first interval's frames: the query's at its start, the source's at its start (tenths of s)
        assert f'src="thumbs/{q}_at{round(q0 * 10)}.jpg"' in block, (q0, block[-800:])
        assert f'src="thumbs/{s}_at{round(s0 * 10)}.jpg"' in block
        assert block.count('<figure class="moment"') == min(n, 4)


def test_vanished_file_gets_a_placeholder_and_the_rest_still_reports(corpus, report, tmp_path, capsys):
    cfg, lib, ids = corpus["cfg"], corpus["lib"], corpus["ids"]
    gone, parked = lib / "b_reencode.mp4", tmp_path / "parked.mp4"
    shutil.move(gone, parked)
    try:
        assert cli_main(["--data-dir", cfg.data_dir, "report", "--out", str(tmp_path / "r"), "--embed-thumbs"]) == 0
    finally:
        shutil.move(parked, gone)
    out = capsys.readouterr().out
    assert f"no thumbnail for {gone}: file gone" in out
    page = (tmp_path / "r" / "report.html").read_text("utf-8")
    block = page.split(f'data-video-id="{ids["b_reencode.mp4"]}"', 1)[1].split('<div class="video"', 1)[0]
    assert '<div class="missing">file gone: no longer at its indexed location</div>' in block
    assert len(re.findall(r'<img src="data:image/jpeg;base64,[^"]*" alt="frame ', page)) == 4 * 3  # inlined
    assert 'src="thumbs/' not in page and page.count('<figure class="moment"') > 0  # moments inlined too
    assert not (tmp_path / "r" / "thumbs").exists()
    with open(tmp_path / "r" / "report.csv", newline="", encoding="utf-8") as f:
        assert list(csv.DictReader(f)) == report["rows"]  # the pairs do not depend on the file being there


def test_render_escapes_every_field_and_handles_an_empty_index():
    evil = "s3://bucket/<script>alert(1)</script>&\"'.mp4"
    seg = SegmentMatch("q" * 32, 1.0, 5.5, "s" * 32, 2.0, 6.5, 0.9, ("visual",))
    m = VideoMatch("s" * 32, evil, {"visual": 0.99, "metadata": 0.5}, 0.97, 0.8, "duplicate", True,
                   ("note <i>",), (seg,))
    data = ReportData("duplicate", [["q" * 32, "s" * 32]], [PairEntry(1, "q" * 32, "s" * 32, m)],
                      {"q" * 32: VideoEntry("q" * 32, "/v/q.mp4", 10.0, missing="file gone: x"),
                       "s" * 32: VideoEntry("s" * 32, evil, None, thumbs=["thumbs/s_0.jpg"])},
                      [], {"q" * 32: "/v/q.mp4", "s" * 32: evil}, 2, "now")
    page = render_html(data)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#x27;.mp4" in page
    assert "note &lt;i&gt;" in page and '<span class="review">review</span>' in page
    assert "q.mp4 1&ndash;5.5 s &larr;" in page and "2&ndash;6.5 s" in page
    assert "audio</th>" in page and '<td class="num">-</td>' in page  # no audio score: a dash, not 0
    empty = render_html(ReportData("similar", [], [], {}, [], {}, 0, "now"))
    assert "No duplicate groups" in empty
    assert normalise_label("near_duplicate") == "near-duplicate"
    with pytest.raises(ValueError):
        normalise_label("none")
    assert thumb_times(9.0, 3) == [1.5, 4.5, 7.5] and thumb_times(None, 3) == [0.0]


def test_thumbnails_from_s3_and_a_missing_object(s3_endpoint, s3_bucket, tmp_path):
    fs, bucket = s3_bucket
    local = make_video(tmp_path / "v.mp4", seconds=4, size=(160, 120), source="smptebars", audio=None)
    fs.put(str(local), f"{bucket}/videos/v.mp4")
    there = VideoEntry("1" * 32, f"s3://{bucket}/videos/v.mp4", 4.0)
    make_thumbs(there, tmp_path / "thumbs", s3_endpoint, n=2)
    assert there.missing == "" and there.thumbs == [f"thumbs/{'1' * 32}_0.jpg", f"thumbs/{'1' * 32}_1.jpg"]
    assert all(Image.open(tmp_path / t).size == (240, 180) for t in there.thumbs)
    gone = VideoEntry("2" * 32, f"s3://{bucket}/videos/deleted.mp4", 4.0)
    make_thumbs(gone, tmp_path / "thumbs", s3_endpoint, n=2)
    assert gone.thumbs == [] and gone.missing == "file gone: no longer at its indexed location"


pytestmark_browser = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                        reason="Debian chromium not installed (scripts/install.sh installs it)")


@pytestmark_browser
def test_report_in_headless_chromium_is_not_blank(report, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    shots = tmp_path_factory.mktemp("report_screenshot")
    shot = shots / "report_screenshot.png"
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.goto((report["out"] / "report.html").as_uri())
            page.wait_for_load_state("load")
            assert page.locator("section.group").count() == 2
            assert page.locator("tr.pair").count() == len(report["rows"])
            broken = page.evaluate("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length")
            assert page.locator("img").count() == report["html"].count("<img") > 15 and broken == 0
            assert "Group 1: 3 videos" in page.locator("h2").first.inner_text()
            assert page.locator("svg.timeline").count() == page.locator("tr.pictures").count() > 0
            assert page.locator("svg.timeline").first.bounding_box()["width"] > 300  # drawn, not collapsed
            page.screenshot(path=str(shot), full_page=True)
            page.locator("#group-2").screenshot(path=str(shots / "report_timeline.png"))
        finally:
            browser.close()
    assert all(u.startswith("file://") for u in requests), requests  # nothing from the network
    img = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float32)
    assert img.shape[0] >= 900 and img.shape[1] >= 1400
    assert img.std() > 20, "screenshot is (nearly) one colour"
    assert len(np.unique(img.reshape(-1, 3)[::7], axis=0)) > 200, "screenshot has too few colours"
    print(f"\nREPORT_SCREENSHOT {shot}")
    try:
        REPO_SHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, REPO_SHOT)
        shutil.copyfile(shots / "report_timeline.png", REPO_TIMELINE_SHOT)
        print(f"REPORT_SCREENSHOT {REPO_SHOT} {REPO_TIMELINE_SHOT}")
    except OSError:
        pass
