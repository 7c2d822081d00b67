"""Request bodies are bounded while they stream in (serve/bodies.py), whatever route reads them and
whether or not they carry a Content-Length; JSON past the bounds is a 400. Driven as ASGI calls
with hand-made messages, so a "300 MB" chunked body is produced lazily and the test sees exactly
how much of it the app pulled."""
from __future__ import annotations

import asyncio
import json

import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel

from serve.bodies import MAX_JSON_DEPTH, BadJson, BodyLimit, JsonTooComplex, json_depth, parse_json

SMALL = 64 << 10
UPLOAD = 1 << 20
CHUNK = 64 << 10


class Review(BaseModel):
    decision: str


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/reviews")
    async def reviews(review: Review) -> dict:
        return {"decision": review.decision}

    @app.post("/search")
    async def search(request: Request) -> dict:
        n = 0
        async for chunk in request.stream():
            n += len(chunk)
        return {"bytes": n}

    app.add_middleware(BodyLimit, limit_for=lambda path: UPLOAD if path == "/search" else SMALL,
                       buffer_max=SMALL)
    return app


def _call(app, path: str, chunks, content_type: str = "application/json") -> tuple[int, dict, int]:
    """(status, JSON answer, bytes the app pulled) for a chunked POST of ``chunks``."""
    pulled = 0
    source = iter(chunks)
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal pulled
        chunk = next(source, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"content-type", content_type.encode()), (b"transfer-encoding", b"chunked")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body or b"{}"), pulled


def _endless(total: int):
    for _ in range(total // CHUNK):
        yield b" " * CHUNK


@pytest.mark.parametrize("path,limit", [("/reviews", SMALL), ("/search", UPLOAD)])
def test_a_chunked_body_is_cut_at_its_limit(path, limit):
    """A 300 MB body without Content-Length: 413 once past the limit, having pulled no more than it."""
    status, answer, pulled = _call(_app(), path, _endless(300 << 20))
    assert status == 413, answer
    assert "limit" in (answer.get("error") or answer.get("detail") or "")
    assert pulled <= limit + CHUNK


def test_bodies_under_the_limit_reach_the_route_unchanged():
    status, answer, _ = _call(_app(), "/reviews", [b'{"decision": ', b'"rejected"}'])
    assert (status, answer) == (200, {"decision": "rejected"})
    status, answer, _ = _call(_app(), "/search", [b"x" * 1000] * 10, "multipart/form-data; boundary=x")
    assert (status, answer) == (200, {"bytes": 10_000})


@pytest.mark.parametrize("body,word", [
    (b"[" * 20_000 + b"]" * 20_000, "deeper"),
    (b'{"decision": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", "deeper"),
    (b'{"decision": "x", "n": ' + b"9" * 5_000 + b"}", "number"),
    (b'{"decision": "x", "n": 1e' + b"9" * 400 + b"}", "number"),
    (b'{"decision": "x", "n": NaN}', "NaN"),
])
def test_json_past_the_bounds_is_a_400(body, word):
    status, answer, _ = _call(_app(), "/reviews", [body])
    assert status == 400 and word in answer["error"], answer


def test_plain_syntax_errors_stay_the_routes_answer():
    status, _, _ = _call(_app(), "/reviews", [b"{bad json"])
    assert status == 422  # FastAPI's validation answer, as before


def test_parse_json_bounds():
    assert parse_json(b'{"a": [1, 2.5, "x]["]}') == {"a": [1, 2.5, "x]["]}
    assert json_depth('{"a": "[[[[[[", "b": [[]]}') == 3  # brackets inside strings do not count
    assert json_depth("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)) == MAX_JSON_DEPTH + 1
    with pytest.raises(JsonTooComplex):
        parse_json(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    with pytest.raises(JsonTooComplex):
        parse_json(b"-Infinity")
    with pytest.raises(BadJson, match="UTF-8"):
        parse_json(b"\xff\xfe")
