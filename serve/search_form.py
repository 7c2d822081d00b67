"""Reading a ``POST /search`` request: exactly one query (an upload part, a video id or a uri) and its options.

Every field is checked here, before anything reaches the search replica: a body too large is
refused while it streams in (413), a malformed form or JSON body is a 400, an upload that does not
start like a video container a 415, and the refusals name the field and why.
"""
from __future__ import annotations

from typing import Any, AsyncIterator

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import FormParser, MultiPartParser

from astradup.io.ids import ID_PATTERN, is_video_id
from astradup.io.gate import HEAD_BYTES, refusal, sniff
from serve.api_errors import ApiError
from serve.bodies import BadJson, parse_json
from serve.guard import BODY_MAX, FORM_OVERHEAD

MAX_TOP = 100
SEARCH_FIELDS = {"file", "fingerprint", "hashes", "video_id", "uri", "top", "include_none"}
# the query video, its fingerprint file (astradup/fingerprint.py) or a vPDQ hash file (io/vpdq_file.py)
FILE_PARTS = ("file", "fingerprint", "hashes")
ONE_OF = "give exactly one of: a 'file' upload, a 'fingerprint' upload, a 'hashes' upload, 'video_id' or 'uri'"

_SEARCH_FIELDS_SCHEMA = {
    "video_id": {"type": "string", "pattern": ID_PATTERN, "description": "search with an indexed video"},
    "uri": {"type": "string", "description": "search with an s3://bucket/key object"},
    "top": {"type": "integer", "minimum": 1, "maximum": MAX_TOP},
    "include_none": {"type": "boolean", "description": "also list candidates labelled none"},
}
SEARCH_OPENAPI = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary", "description": "the query video"},
        "fingerprint": {"type": "string", "format": "binary",
                        "description": "instead of the video: its fingerprint file (`astradup fingerprint`)"},
        "hashes": {"type": "string", "format": "binary",
                   "description": "instead of a video: a vPDQ hash file (frame,quality,pdq_hex,timestamp lines)"},
        **_SEARCH_FIELDS_SCHEMA}}},
    "application/json": {"schema": {"type": "object", "properties": _SEARCH_FIELDS_SCHEMA,
                                    "additionalProperties": False}},
}}}


async def limited(stream: AsyncIterator[bytes], limit: int, what: str) -> AsyncIterator[bytes]:
    """The request body, refused with 413 as soon as it passes ``limit`` (before it is all in)."""
    n = 0
    async for chunk in stream:
        n += len(chunk)
        if n > limit:
            raise ApiError(413, f"{what} is over the limit of {limit} bytes")
        yield chunk


async def read_body(request: Request, limit: int) -> bytes:
    return b"".join([c async for c in limited(request.stream(), limit, "request body")])


def field_int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ApiError(400, f"{name} must be an integer from {lo} to {hi}")
    try:
        n = int(value)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer from {lo} to {hi}") from None
    if not lo <= n <= hi:
        raise ApiError(400, f"{name} must be an integer from {lo} to {hi}")
    return n


def field_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no", ""):
        return value.lower() in ("true", "1", "yes")
    raise ApiError(400, f"{name} must be true or false")


def check_id(value: Any, name: str = "video_id") -> str:
    if not is_video_id(value):
        raise ApiError(400, f"{name} must be 32 lowercase hex characters (a video's content id)")
    return value


async def read_search_request(request: Request, limit: int) -> tuple[dict[str, Any], UploadFile | None, str]:
    """(fields, upload, its part name): exactly one of a 'file', 'fingerprint' or 'hashes' part,
    'video_id' or 'uri'. ``limit``: the most bytes an upload may have."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ApiError(400, "Content-Length is not a number")
        if int(length) > limit + FORM_OVERHEAD:
            raise ApiError(413, f"upload is over the limit of {limit} bytes")
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    upload: UploadFile | None = None
    part = ""
    if media_type == "multipart/form-data":
        parser = MultiPartParser(request.headers, limited(request.stream(), limit + FORM_OVERHEAD, "upload"),
                                 max_files=len(FILE_PARTS), max_fields=len(SEARCH_FIELDS), max_part_size=4096)
        form = await parse_form(parser)
        fields: dict[str, Any] = {}
        for name, value in form.multi_items():
            if name in fields or (name in FILE_PARTS and upload is not None):
                raise ApiError(400, f"field {name[:40]!r} given twice" if name == part else ONE_OF)
            if name in FILE_PARTS:
                if not isinstance(value, UploadFile):
                    raise ApiError(400, f"{name!r} must be a file part (with a filename)")
                upload, part = value, name
            elif isinstance(value, UploadFile):
                raise ApiError(400, f"only 'file', 'fingerprint' or 'hashes' may be a file part, not {name[:40]!r}")
            else:
                fields[name] = value
    elif media_type == "application/x-www-form-urlencoded":
        parser = FormParser(request.headers, limited(request.stream(), BODY_MAX, "request body"),
                            max_fields=len(SEARCH_FIELDS), max_part_size=4096)
        fields = dict((await parse_form(parser)).multi_items())
    elif media_type == "application/json":
        body = await read_body(request, BODY_MAX)
        try:
            fields = parse_json(body)
        except BadJson as e:
            raise ApiError(400, str(e)) from None
        if not isinstance(fields, dict):
            raise ApiError(400, "JSON body must be an object such as {\"video_id\": \"...\"}")
    else:
        raise ApiError(415, "send multipart/form-data with a 'file' part, or JSON "
                            "{\"video_id\": \"...\"} or {\"uri\": \"s3://...\"}")
    for name in FILE_PARTS:
        if name in fields:
            raise ApiError(400, f"{name!r} must be a file part (multipart/form-data with a filename)")
    unknown = sorted(set(fields) - SEARCH_FIELDS)
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(repr(u[:40]) for u in unknown[:5])}")
    given = [k for k in ("video_id", "uri") if k in fields] + ([part] if upload is not None else [])
    if len(given) != 1:
        raise ApiError(400, ONE_OF + (f" (got {', '.join(given)})" if given else ""))
    return fields, upload, part


async def parse_form(parser):
    """The parser's form; whatever it trips on in the client's bytes is a 400 (a 413 stays one)."""
    try:
        return await parser.parse()
    except (ApiError, StarletteHTTPException):  # BodyTooLarge from receive stays a 413, not a 400
        raise
    except Exception as e:  # whatever the parser trips on is in the client's bytes
        raise ApiError(400, f"malformed form body: {str(e)[:120] or type(e).__name__}") from None

def check_size(data: bytes, limit: int) -> None:
    """An upload is not empty and not over ``limit`` bytes."""
    if not data:
        raise ApiError(400, "empty upload")
    if len(data) > limit:
        raise ApiError(413, f"upload is over the limit of {limit} bytes")

def check_upload(data: bytes, limit: int) -> str:
    """``check_size``, then the name of the video container the bytes start like (415 if none)."""
    check_size(data, limit)
    container = sniff(data[:HEAD_BYTES], len(data))
    if container is None:
        raise ApiError(415, refusal(data[:HEAD_BYTES]))
    return container.name
