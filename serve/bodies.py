"""Request bodies, bounded while they arrive: one ASGI middleware for every route, one JSON parser.

A Content-Length check alone stops only honest clients: a chunked body has no length, and a
handler (or FastAPI's body parsing for a pydantic model) that reads the whole body before looking
at it holds all of it. So the cap sits on the ASGI ``receive`` channel itself: the bytes are
counted as they come and the request is answered 413 the moment it passes its route's limit,
whoever is reading. Small bodies (everything but an upload) are read here in full, JSON ones
checked against :func:`parse_json`'s bounds (nesting depth, number length, no NaN/Infinity), and
handed to the route unchanged, so a body past them never reaches FastAPI's parser (whose
RecursionError on a 20,000-deep document was a 500).
"""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from fastapi import HTTPException

MAX_JSON_DEPTH = 32  # our documents are 1-2 deep
MAX_NUMBER_CHARS = 40  # a float64 needs at most 24; Python refuses ints over 4,300 digits with a ValueError

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class BodyTooLarge(HTTPException):
    """413 raised from ``receive``: an HTTPException so FastAPI's body parsing re-raises it as is."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is over the limit of {limit} bytes")


class BadJson(ValueError):
    """A body that is not JSON at all (the route answers it as it always has)."""


class JsonTooComplex(BadJson):
    """JSON past the bounds (depth, number length, NaN/Infinity): refused before any parser sees it."""


def _number(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if len(text) > MAX_NUMBER_CHARS:
            raise JsonTooComplex(f"JSON number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
        return kind(text)
    return parse


def _constant(name: str) -> Any:
    raise JsonTooComplex(f"{name} is not a JSON number")


def json_depth(body: bytes | str) -> int:
    """Deepest nesting of ``[`` / ``{`` outside strings, counted without parsing (so without recursion)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_json(body: bytes) -> Any:
    """The one JSON reader of the service: BadJson (a 400) for anything it will not take."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadJson("JSON body is not UTF-8") from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise JsonTooComplex(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text, parse_int=_number(int), parse_float=_number(float), parse_constant=_constant)
    except BadJson:
        raise
    except RecursionError:
        raise JsonTooComplex(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as e:
        raise BadJson(f"body is not valid JSON: {str(e)[:120]}") from None


async def _answer(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: every request body counted while it streams in, against ``limit_for(path)``.

    Bodies of up to ``buffer_max`` bytes are read here first (413 past it, chunked or not), JSON
    ones checked (400), then replayed to the app; larger limits (uploads) are enforced on the fly
    by raising :class:`BodyTooLarge` from ``receive`` while the route reads.
    """

    def __init__(self, app: Any, limit_for: Callable[[str], int], buffer_max: int) -> None:
        self.app = app
        self.limit_for = limit_for
        self.buffer_max = buffer_max

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope.get("path", ""))
        if limit <= self.buffer_max:
            return await self._buffered(scope, receive, send, limit)
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)

    async def _buffered(self, scope: dict, receive: Receive, send: Send, limit: int) -> None:
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                return await _answer(send, 413, f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and _is_json(scope):
            try:
                parse_json(body)
            except JsonTooComplex as e:
                return await _answer(send, 400, str(e))
            except BadJson:
                pass  # plain syntax errors are the route's to answer (422 for a model, 400 for /search)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _is_json(scope: dict) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            kind = value.split(b";", 1)[0].strip().lower()
            return kind == b"application/json" or kind.endswith(b"+json")
    return False
