"""Webhook notification at the end of a backfill: one JSON POST to ``notify.webhook_url``.

A backfill can run for hours on a cluster; whoever started it wants to hear when it ends and how
it went without tailing the job log. The notification is a courtesy, never a reason to fail: the
videos are indexed whether or not the receiver is up, so every error here is caught, logged and
returned as data (it lands in the backfill summary) instead of raised.
"""
from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from typing import Any, Callable

from astradup.config import NotifyConfig

EVENT = "backfill.finished"
ATTEMPTS = 3  # the first try and two retries
BACKOFF_S = 1.0  # wait before retry k is BACKOFF_S * k
MAX_FAILURES_LISTED = 100  # a corpus of broken files must not make a multi-megabyte POST

_log = logging.getLogger(__name__)


def redact(url: str) -> str:
    """scheme://host[:port]/... : webhook URLs often carry their secret in the path or query
    (Slack, Teams), and logs are read by more people than the config."""
    try:
        p = urllib.parse.urlsplit(url)
        host = p.hostname or ""  # never the user:password@ part
        if p.port:
            host = f"{host}:{p.port}"
    except ValueError:  # a bad IPv6 literal, a port out of range
        return "<unparsable url>"
    if not p.scheme:
        return "<not a url>"
    return f"{p.scheme}://{host}/..." if p.path not in ("", "/") or p.query else f"{p.scheme}://{host}/"


def backfill_payload(summary: dict[str, Any], report_path: str | None = None) -> dict[str, Any]:
    """The POST body: counts, failures (capped), media hours, wall seconds, the report if one was written.

    ``summary`` is :meth:`astradup.pipeline.IndexReport.to_dict` (plus what the job adds); a job that
    died before it had counts passes ``{"error": "..."}`` and the body says ``status: error``.
    """
    failures = list(summary.get("failed") or [])
    body: dict[str, Any] = {
        "event": EVENT,
        "status": "error" if summary.get("error") else "ok",
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": {"listed": int(summary.get("listed", 0)), "indexed": int(summary.get("indexed", 0)),
                   "skipped": int(summary.get("skipped", 0)), "failed": len(failures)},
        "failures": failures[:MAX_FAILURES_LISTED],
        "failures_truncated": max(0, len(failures) - MAX_FAILURES_LISTED),
        "media_hours": float(summary.get("media_hours", 0.0)),
        "wall_seconds": float(summary.get("wall_seconds", 0.0)),
        "x_realtime": float(summary.get("x_realtime", 0.0)),
        "report": report_path,
    }
    for key in ("error", "report_error", "vectors"):
        if summary.get(key):
            body[key] = summary[key]
    return body


def post_json(url: str, body: dict[str, Any], timeout: float, attempts: int = ATTEMPTS,
              backoff: float = BACKOFF_S, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """POST ``body``; retry on a network error, a timeout, 429 or 5xx (the receiver may come back),
    not on another 4xx (the same request would be refused again). Never raises."""
    data = json.dumps(body, default=str).encode()
    result: dict[str, Any] = {"url": redact(url), "ok": False, "status": None, "attempts": 0, "error": ""}
    try:
        scheme = urllib.parse.urlsplit(url).scheme
    except ValueError as e:
        scheme = f"unparsable ({e})"
    if scheme not in ("http", "https"):  # urllib would also open file:// or ftp://
        result.update(attempts=1, error=f"not an http(s) url: {result['url']}")
        return result
    for k in range(max(1, attempts)):
        if k:
            sleep(backoff * k)
        result["attempts"] = k + 1
        try:
            req = urllib.request.Request(url, data=data, method="POST", headers={
                "Content-Type": "application/json", "User-Agent": "astradup-notify/1"})
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (operator-given URL)
                result.update(status=resp.status, ok=200 <= resp.status < 300, error="")
                if result["ok"]:
                    return result
                result["error"] = f"HTTP {resp.status}"
        except urllib.error.HTTPError as e:
            result.update(status=e.code, error=f"HTTP {e.code} {e.reason}")
            if e.code != 429 and e.code < 500:
                return result
        except Exception as e:  # URLError, timeout, connection reset, bad URL: all only a failed notice
            result.update(status=None, error=f"{type(e).__name__}: {getattr(e, 'reason', None) or e}")
            if isinstance(e, ValueError):  # a malformed URL will not heal on retry
                return result
    return result


def notify_backfill_end(cfg: NotifyConfig, summary: dict[str, Any], report_path: str | None = None,
                        log: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """POST the end-of-backfill event to ``cfg.webhook_url``; None when no webhook is configured.

    Returns what happened (``ok``, HTTP ``status``, ``attempts``, ``error``, the redacted url), so
    the job can put it in its summary; a failure is logged, never raised.
    """
    if not cfg.webhook_url:
        return None
    res = post_json(cfg.webhook_url, backfill_payload(summary, report_path), timeout=cfg.timeout)
    msg = (f"webhook {res['url']}: delivered (HTTP {res['status']})" if res["ok"] else
           f"webhook {res['url']}: NOT delivered after {res['attempts']} attempt(s): {res['error']}")
    if log:
        log(msg)
    (_log.info if res["ok"] else _log.warning)(msg)
    return res
