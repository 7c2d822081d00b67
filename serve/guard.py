"""The gateway's guard on every request: Host, API key, body size, and the error counter.

Module-level FastAPI hooks cannot reach the deployment instance, so they read the replica's
settings from ``serve.state.GATEWAY`` (set by the Gateway when it starts).
"""
from __future__ import annotations

import hmac

from fastapi import FastAPI, Request, Response

from serve import state
from serve.api_errors import json_error
from serve.bodies import BodyLimit
from serve.hosts import HostPolicy

FORM_OVERHEAD = 64 << 10  # multipart boundaries, headers and small fields around the file
BODY_MAX = 64 << 10  # any request body other than an upload
KEY_COOKIE = "astradup_key"
PUBLIC_PATHS = ("/", "/healthz", "/openapi.json", "/docs", "/favicon.ico")


def _body_limit(path: str) -> int:
    """The most bytes a request body on ``path`` may have: an upload's on /search, BODY_MAX elsewhere."""
    return int(state.GATEWAY["upload_limit"]) + FORM_OVERHEAD if path == "/search" else BODY_MAX


def install_guard(api: FastAPI) -> None:
    """``api`` checks every request (``guard``) and bounds every body (``BodyLimit``)."""
    # Added before the guard, so it runs inside it: the API key is checked (and errors counted) first.
    api.add_middleware(BodyLimit, limit_for=_body_limit, buffer_max=BODY_MAX)
    api.middleware("http")(guard)


async def guard(request: Request, call_next):
    """Host, API key, body size of non-upload requests, and the error counter.

    The Host check comes first and covers every path, the page included: it is what stops a
    DNS-rebinding page from talking to the service as if it were same-origin.
    """
    hosts: HostPolicy = state.GATEWAY["hosts"]
    host = request.headers.get("host")
    if not hosts.allows(host):
        return _count(json_error(400, hosts.refusal(host)))
    path = request.url.path
    key = state.GATEWAY["api_key"]
    if key and path not in PUBLIC_PATHS and not path.startswith("/static/"):
        given = request.headers.get("x-api-key") or request.cookies.get(KEY_COOKIE) or ""
        if not hmac.compare_digest(given.encode("utf-8", "replace"), key.encode("utf-8")):
            return _count(json_error(401, "missing or wrong API key (send it in the X-API-Key header)"))
    length = request.headers.get("content-length")
    if length is not None and path != "/search":
        if not length.isdigit():
            return _count(json_error(400, "Content-Length is not a number"))
        if int(length) > BODY_MAX:
            return _count(json_error(413, f"request body over {BODY_MAX} bytes"))
    try:
        response = await call_next(request)
    except Exception:
        _count_status(500)
        raise
    return _count(response)


def _count(response: Response) -> Response:
    if response.status_code >= 400:
        _count_status(response.status_code)
    return response


def _count_status(status: int) -> None:
    m = state.GATEWAY["metrics"]
    if m is not None:
        m.error(status)
