"""The end-of-backfill webhook: a local HTTP receiver gets the POST of a real backfill run
(jobs.backfill.main, real pipeline) with the right counts and the report path; an unreachable
receiver, a refusing one or a flaky one never fails the job."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from astradup.config import NotifyConfig
from astradup.notify import EVENT, backfill_payload, notify_backfill_end, post_json, redact
from jobs.backfill import SUMMARY_TAG, main
from tests.conftest import free_port
from tests.media import make_broken, make_copy, make_video


class Receiver:
    """A webhook receiver on 127.0.0.1 in a thread; answers each POST with the next status in ``codes``."""

    def __init__(self, codes: list[int] | None = None) -> None:
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.codes = list(codes or [])
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.bodies.append(json.loads(raw))
                outer.headers.append(dict(self.headers))
                code = outer.codes.pop(0) if outer.codes else 204
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/secret-token?sig=abc"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _summary_line(out: str) -> dict:
    line = [ln for ln in out.splitlines() if ln.startswith(SUMMARY_TAG + " ")][-1]
    return json.loads(line[len(SUMMARY_TAG) + 1:])


@pytest.fixture()
def videos(tmp_path):
    """Two sources, a re-encode of one, one broken file: 3 indexed, 1 failed, one duplicate pair."""
    d = tmp_path / "videos"
    d.mkdir()
    a = make_video(d / "a.mp4", seconds=6, size=(240, 180), source="mandelbrot", audio="music", seed=1)
    make_video(d / "b.mp4", seconds=6, size=(240, 180), source="life", audio="music", seed=2)
    make_copy(a, d / "a_copy.mp4", vf="scale=200:150", codec="mpeg4")
    make_broken("truncated", d / "broken.mp4")
    return d


def test_backfill_posts_counts_failures_and_report_then_survives_a_dead_webhook(videos, tmp_path, capsys,
                                                                                monkeypatch):
    monkeypatch.setenv("ASTRADUP_PIPELINE__DASHBOARD", "false")
    args = ["--source", str(videos), "--data-dir", str(tmp_path / "data"), "--decode-concurrency", "1"]
    with Receiver() as rx:
        assert main([*args, "--webhook", rx.url, "--report", str(tmp_path / "rep")]) == 0
    summary = _summary_line(capsys.readouterr().out)
    assert len(rx.bodies) == 1, rx.bodies
    body = rx.bodies[0]
    assert rx.headers[0]["Content-Type"] == "application/json"
    assert body["event"] == EVENT == "backfill.finished" and body["status"] == "ok"
    assert body["counts"] == {"listed": 4, "indexed": 3, "skipped": 0, "failed": 1}
    assert [Path(f["uri"]).name for f in body["failures"]] == ["broken.mp4"] and body["failures"][0]["reason"]
    assert body["media_hours"] == pytest.approx(summary["media_hours"]) and 0 < body["media_hours"] < 0.01
    assert body["wall_seconds"] == pytest.approx(summary["wall_seconds"]) and body["wall_seconds"] > 0
    assert body["report"] == str(tmp_path / "rep" / "report.html") and Path(body["report"]).is_file()
    assert summary["report"]["groups"] == 1 and summary["report"]["pairs"] == 1
    assert "a_copy.mp4" in (tmp_path / "rep" / "report.csv").read_text()
    assert summary["notify"]["ok"] and summary["notify"]["attempts"] == 1
    assert "secret-token" not in json.dumps(summary)  # the webhook's secret stays out of logs

    # the receiver is gone: the re-run (everything already indexed) still succeeds and says so
    dead = f"http://127.0.0.1:{free_port()}/hook"
    assert main([*args, "--webhook", dead]) == 0
    out = capsys.readouterr().out
    summary = _summary_line(out)
    assert summary["indexed"] == 0 and summary["skipped"] == 3
    assert summary["notify"]["ok"] is False and summary["notify"]["attempts"] == 3
    assert "Connection" in summary["notify"]["error"] or "refused" in summary["notify"]["error"]
    assert "webhook http://127.0.0.1:" in out and "NOT delivered after 3 attempt(s)" in out


def test_a_backfill_that_dies_says_so_and_still_fails(tmp_path, monkeypatch):
    import astradup.pipeline

    def broken_index(*args, **kwargs):
        raise RuntimeError("milvus went away")

    monkeypatch.setattr(astradup.pipeline, "index", broken_index)
    (tmp_path / "videos").mkdir()
    with Receiver() as rx, pytest.raises(RuntimeError, match="milvus went away"):
        main(["--source", str(tmp_path / "videos"), "--data-dir", str(tmp_path / "data"), "--webhook", rx.url])
    assert len(rx.bodies) == 1 and rx.bodies[0]["status"] == "error"
    assert rx.bodies[0]["error"] == "RuntimeError: milvus went away" and rx.bodies[0]["counts"]["indexed"] == 0


def test_flaky_receiver_is_retried_and_a_refusal_is_not():
    sleeps: list[float] = []
    with Receiver([503, 500, 200]) as rx:
        res = post_json(rx.url, {"event": EVENT}, timeout=5, sleep=sleeps.append)
    assert res["ok"] and res["status"] == 200 and res["attempts"] == 3 and len(rx.bodies) == 3
    assert sleeps == [1.0, 2.0]
    with Receiver([400, 200]) as rx:
        res = post_json(rx.url, {"event": EVENT}, timeout=5, sleep=sleeps.append)
    assert not res["ok"] and res["status"] == 400 and res["attempts"] == 1 and len(rx.bodies) == 1
    with Receiver([429, 502, 503]) as rx:
        res = post_json(rx.url, {"event": EVENT}, timeout=5, sleep=lambda s: None)
    assert not res["ok"] and res["status"] == 503 and res["attempts"] == 3 and "503" in res["error"]


def test_slow_receiver_times_out_without_raising():
    gate = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            gate.wait(5)

        def log_message(self, *args) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        res = notify_backfill_end(NotifyConfig(f"http://127.0.0.1:{srv.server_port}/", timeout=0.3),
                                  {"listed": 1, "indexed": 1})
    finally:
        gate.set()
        srv.shutdown()
        srv.server_close()
    assert res is not None and not res["ok"] and res["attempts"] == 3 and "timed out" in res["error"].lower()


def test_no_webhook_no_post_and_a_bad_url_is_reported():
    assert notify_backfill_end(NotifyConfig(""), {"listed": 1}) is None
    res = notify_backfill_end(NotifyConfig("not a url", timeout=1), {"listed": 1})
    assert res is not None and not res["ok"] and res["attempts"] == 1 and "not an http(s) url" in res["error"]
    res = notify_backfill_end(NotifyConfig("file:///etc/passwd", timeout=1), {"listed": 1})
    assert res is not None and not res["ok"] and "not an http(s) url" in res["error"]
    res = notify_backfill_end(NotifyConfig("http://[::1", timeout=1), {"listed": 1})  # unparsable host
    assert res is not None and not res["ok"] and res["attempts"] == 1


def test_payload_caps_failures_and_marks_a_dead_job():
    failed = [{"uri": f"s3://b/{i}.mp4", "reason": "truncated"} for i in range(150)]
    body = backfill_payload({"listed": 150, "indexed": 0, "failed": failed, "media_hours": 0.0}, None)
    assert body["counts"]["failed"] == 150 and len(body["failures"]) == 100 and body["failures_truncated"] == 50
    assert body["status"] == "ok" and body["report"] is None
    died = backfill_payload({"error": "RuntimeError: milvus down"})
    assert died["status"] == "error" and died["error"] == "RuntimeError: milvus down"
    assert redact("https://hooks.example.com/services/T0/B0/XYZ?x=1") == "https://hooks.example.com/..."
    assert redact("http://127.0.0.1:9/") == "http://127.0.0.1:9/"
    assert redact("https://user:pw@h.example/x") == "https://h.example/..."
    assert redact("http://h:99999/") == "<unparsable url>"
