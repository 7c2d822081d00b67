"""The web page in a real browser: Debian's chromium, headless, driven by Playwright (never a
downloaded browser). Page and filter the video picker, upload a query, see the match and its
timeline, switch between its intervals from the buttons, the list and the timeline (both players
seek, over HTTP range requests), see frames at the matched moments, review a low-confidence match,
and keep screenshots."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import serve_harness
from tests.serve_harness import srv  # noqa: F401  (the shared running app)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO_SHOT = Path(__file__).resolve().parents[2] / "benchmarks" / "out" / "serve_screenshot.png"
REPO_TIMELINE_SHOT = REPO_SHOT.with_name("serve_timeline.png")
WAIT_MS = 60_000

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Debian chromium not installed (scripts/install.sh installs it)")




@pytest.fixture()
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            ctx = browser.new_context(viewport={"width": 1400, "height": 900})
            yield ctx.new_page()
        finally:
            browser.close()


def _settled(page, player: str, t: float) -> None:
    """Wait until a <video> has data at ``t`` (metadata in, seek done): a real seek, not just a number."""
    page.wait_for_function(
        "([id, t]) => { const v = document.getElementById(id);"
        " return v.readyState >= 2 && !v.seeking && Math.abs(v.currentTime - t) < 0.3; }",
        arg=[player, t], timeout=WAIT_MS)


def _not_blank(png: Path) -> None:
    img = np.asarray(Image.open(png).convert("RGB"), dtype=np.float32)
    assert img.shape[0] > 500 and img.shape[1] > 1000
    assert img.std() > 20, "screenshot is (nearly) one colour"
    assert len(np.unique(img.reshape(-1, 3)[::7], axis=0)) > 200, "screenshot has too few colours"


def _keep(shot: Path, repo_path: Path) -> None:
    print(f"\nscreenshot: {shot}")
    try:
        repo_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, repo_path)
        print(f"screenshot: {repo_path}")
    except OSError:
        pass


def _timeline_drawn(page, res: dict, segs: list[dict]) -> None:
    """The match's timeline: A (the query) and B (the source) to scale, interval i on both in one colour."""
    svg = page.locator("#timeline svg.timeline")
    assert svg.count() == 1
    geo = page.evaluate("""() => [...document.querySelectorAll('#timeline rect')].map(r => ({
        cls: r.getAttribute('class'), i: r.getAttribute('data-index'), fill: r.getAttribute('fill'),
        x: +r.getAttribute('x'), w: +r.getAttribute('width'), title: r.querySelector('title').textContent }))""")
    tracks = {g["cls"]: g for g in geo if g["cls"].startswith("track")}
    a = [g for g in geo if g["cls"].startswith("iv iv-a")]
    b = [g for g in geo if g["cls"].startswith("iv iv-b")]
    assert len(a) == len(b) == len(segs)
    qd, sd = res["query"]["duration"], res["matches"][0]["duration"]
    scale = tracks["track track-a"]["w"] / qd
    assert tracks["track track-b"]["w"] == pytest.approx(sd * scale, rel=1e-3)  # lengths to scale
    assert max(qd, sd) * scale == pytest.approx(556, rel=1e-3)  # the longer one spans the width
    for i, s in enumerate(segs):
        assert a[i]["fill"] == b[i]["fill"] and a[i]["i"] == b[i]["i"] == str(i)
        assert a[i]["x"] == pytest.approx(2 + s["q_start"] * scale, abs=0.05)
        assert b[i]["x"] == pytest.approx(2 + s["s_start"] * scale, abs=0.05)
        assert b[i]["w"] == pytest.approx(max(2, (s["s_end"] - s["s_start"]) * scale), abs=0.05)
        assert f"{s['q_start']:.1f}–{s['q_end']:.1f} s" in a[i]["title"]
        assert f"{s['s_start']:.1f}–{s['s_end']:.1f} s" in a[i]["title"]
    assert a[0]["fill"] != a[1]["fill"]
    assert page.locator("#timeline polygon.band").count() == len(segs)


def test_upload_match_intervals_review_and_screenshot(srv, page, tmp_path):
    media_status: list[int] = []
    page.on("response", lambda r: media_status.append(r.status) if "/media/" in r.url else None)
    page.on("dialog", lambda d: d.accept(serve_harness.API_KEY))  # the page asks for the key on a 401
    page.goto(srv.url + "/")
    page.wait_for_function("document.getElementById('index-info').textContent.includes('indexed')",
                           timeout=WAIT_MS)
    assert page.locator("#pick-video option").count() >= serve_harness.N_VIDEOS - 1
    n_ok = srv.get("/videos").json()["total"]
    assert page.locator("#pick-page").inner_text() == f"1–{n_ok} of {n_ok}"
    assert page.locator("#pick-next").is_disabled() and page.locator("#pick-prev").is_disabled()
    page.fill("#pick-filter", "COPY")  # the picker asks the server for names containing it
    page.wait_for_function("document.getElementById('pick-page').textContent === '1–1 of 1'", timeout=WAIT_MS)
    assert page.locator("#pick-video option").all_inner_texts()[0].startswith("c_copy.mp4")
    page.fill("#pick-filter", "")
    page.wait_for_function(f"document.getElementById('pick-page').textContent === '1–{n_ok} of {n_ok}'",
                           timeout=WAIT_MS)

    # upload a query -> the videos it copies
    page.set_input_files("#upload-file", str(srv.files["two.mp4"]))
    page.click("#upload-search")
    first = page.locator(".result-card").first
    first.wait_for(timeout=WAIT_MS)
    assert first.locator(".name").inner_text() == "a.mp4"
    assert first.locator(".badge").first.inner_text() in ("duplicate", "near-duplicate")
    assert "2 interval(s)" in first.inner_text()
    page.wait_for_function("document.querySelector('.result-card img').naturalWidth > 0", timeout=WAIT_MS)

    # its intervals: the first is selected, both players sit at its start
    res = page.evaluate("state.result")
    segs = res["matches"][0]["segments"]
    assert page.locator("#intervals li").count() == len(segs) == 2
    assert page.locator("#interval-pos").inner_text() == "interval 1 / 2"
    _settled(page, "query-player", segs[0]["q_start"])
    _settled(page, "source-player", segs[0]["s_start"])

    # next / previous switch intervals and seek both players
    page.click("#next-interval")
    assert page.locator("#interval-pos").inner_text() == "interval 2 / 2"
    assert page.locator("#next-interval").is_disabled() and not page.locator("#prev-interval").is_disabled()
    _settled(page, "query-player", segs[1]["q_start"])
    _settled(page, "source-player", segs[1]["s_start"])
    assert page.locator("#intervals li.active").get_attribute("data-index") == "1"
    page.click("#prev-interval")
    assert page.locator("#interval-pos").inner_text() == "interval 1 / 2"
    _settled(page, "source-player", segs[0]["s_start"])
    page.locator("#intervals li").nth(1).click()  # clicking an interval seeks too
    _settled(page, "query-player", segs[1]["q_start"])
    _settled(page, "source-player", segs[1]["s_start"])
    assert 206 in media_status, media_status  # the source player read byte ranges

    # the timeline: both bars, each interval on both in one colour, tooltips with the seconds
    _timeline_drawn(page, res, segs)
    page.locator("#timeline rect.iv-b[data-index='0']").click()  # clicking the timeline seeks both
    _settled(page, "query-player", segs[0]["q_start"])
    _settled(page, "source-player", segs[0]["s_start"])
    assert page.locator("#interval-pos").inner_text() == "interval 1 / 2"
    page.locator("#timeline rect.iv-a[data-index='1']").click()
    _settled(page, "query-player", segs[1]["q_start"])
    _settled(page, "source-player", segs[1]["s_start"])
    assert page.locator("#timeline rect.iv-a.active").get_attribute("data-index") == "1"
    # frames where the intervals start (the source side: the upload has no server thumbnail)
    figs = page.locator("#moments figure.moment")
    assert figs.count() == 2
    page.wait_for_function("[...document.querySelectorAll('#moments img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)", timeout=WAIT_MS)
    assert f"B {segs[0]['s_start']:.1f} s" in figs.nth(0).inner_text()
    figs.nth(0).click()
    _settled(page, "source-player", segs[0]["s_start"])
    tl_shot = tmp_path / "serve_timeline.png"
    page.locator("#detail").screenshot(path=str(tl_shot))
    _keep(tl_shot, REPO_TIMELINE_SHOT)

    shot = tmp_path / "serve_screenshot.png"
    page.screenshot(path=str(shot), full_page=True)
    _not_blank(shot)
    _keep(shot, REPO_SHOT)

    # review queue: a low-confidence pair, confirmed from the page
    g, g_dub = srv.ids["g.mp4"], srv.ids["g_dub.mp4"]
    page.click("#nav-review")
    item = page.locator(f".review-item[data-query-id='{g}'][data-source-id='{g_dub}'], "
                        f".review-item[data-query-id='{g_dub}'][data-source-id='{g}']")
    item.wait_for(timeout=WAIT_MS)
    item.locator("button.confirm").click()
    item.wait_for(state="detached", timeout=WAIT_MS)
    verdicts = srv.get("/reviews?decision=confirmed").json()["reviews"]
    assert any({v["query_id"], v["source_id"]} == {g, g_dub} for v in verdicts)
