"""The HTTP error answer: every refusal, whoever raises it, reaches the client as ``{"error": "..."}``.

Routes raise ``ApiError``; FastAPI's own refusals (a path or query parameter out of bounds, an
unknown route) are rewritten to the same body, so a client reads one shape for every 4xx. The
search replica cannot raise across a deployment handle, so it answers ``{"error", "status"}``
dicts, which ``replica_answer`` turns into the same errors.
"""
from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    """A refusal a route raises: ``status``, ``message`` and any headers (Retry-After) of the answer."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)



def install_error_handlers(api: FastAPI) -> None:
    """``api`` answers ApiError, validation errors and HTTP exceptions with the JSON error body."""

    @api.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> JSONResponse:
        return json_error(e.status, e.message, e.headers)

    @api.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        parts = []
        for err in e.errors()[:5]:
            loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
            parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid")))
        return json_error(422, "; ".join(parts) or "invalid request")

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        msg = e.detail if isinstance(e.detail, str) else json.dumps(e.detail)
        if e.status_code == 404 and msg == "Not Found":
            msg = f"no such endpoint: {request.method} {request.url.path[:200]}"
        return json_error(e.status_code, msg, getattr(e, "headers", None))


async def replica_answer(response) -> dict:
    """The search replica's answer (an awaitable dict), an ``{"error", "status"}`` one raised as ApiError."""
    res = await response
    if "error" in res:
        # A busy search replica says when to come back (503 + Retry-After: decode slots full).
        retry = res.get("retry_after")
        raise ApiError(int(res.get("status", 400)), res["error"],
                       {"Retry-After": str(int(retry))} if retry else None)
    return res
