"""The web page in a real browser: Debian's chromium, headless, driven by Playwright (never a
downloaded browser). Upload a query, see the match, switch between its intervals (both players
seek, over HTTP range requests), review a low-confidence match, and keep a screenshot."""
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
REPO_SHOT = Path(__file__).resolve().parent.parent / "benchmarks" / "out" / "serve_screenshot.png"
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


def test_upload_match_intervals_review_and_screenshot(srv, page, tmp_path):
    media_status: list[int] = []
    page.on("response", lambda r: media_status.append(r.status) if "/media/" in r.url else None)
    page.on("dialog", lambda d: d.accept(serve_harness.API_KEY))  # the page asks for the key on a 401
    page.goto(srv.url + "/")
    page.wait_for_function("document.getElementById('index-info').textContent.includes('indexed')",
                           timeout=WAIT_MS)
    assert page.locator("#pick-video option").count() >= serve_harness.N_VIDEOS - 1

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

    shot = tmp_path / "serve_screenshot.png"
    page.screenshot(path=str(shot), full_page=True)
    _not_blank(shot)
    print(f"\nscreenshot: {shot}")
    try:
        REPO_SHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, REPO_SHOT)
        print(f"screenshot: {REPO_SHOT}")
    except OSError:
        pass

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
