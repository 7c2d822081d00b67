"""Malformed requests get a 4xx with {"error": "..."}, never a 5xx: explicit cases (empty, not a
video, too large, truncated, path-like ids, bad JSON...) and a schemathesis fuzz of the app's own
OpenAPI schema (valid and invalid inputs, a bounded number of examples per operation)."""
from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests import serve_harness
from tests.serve_harness import srv  # noqa: F401  (the shared running app)
from tests.media import make_broken

FUZZ_EXAMPLES = 20  # per operation and mode: ~12 operations, well under a minute in all




def _assert_4xx(r: requests.Response, status: int | tuple[int, ...], word: str = "") -> None:
    want = (status,) if isinstance(status, int) else status
    assert r.status_code in want, (r.status_code, r.text[:300])
    err = r.json()["error"]
    assert isinstance(err, str) and err
    assert word.lower() in err.lower(), err


def _upload(srv, name: str, data: bytes, **kw) -> requests.Response:
    return srv.post("/search", files={"file": (name, data, "video/mp4")}, **kw)


def test_upload_refusals(srv, tmp_path):
    _assert_4xx(_upload(srv, "empty.mp4", b""), 400, "empty")
    text = make_broken("not_video", tmp_path / "t.mp4").read_bytes()
    _assert_4xx(_upload(srv, "t.mp4", text), 415, "not a video")
    png = make_broken("image", tmp_path / "i.mp4").read_bytes()
    _assert_4xx(_upload(srv, "i.mp4", png), 415, "not a video")
    m4a = make_broken("no_video_stream", tmp_path / "a.mp4").read_bytes()
    _assert_4xx(_upload(srv, "a.mp4", m4a), 415, "not a video")  # an audio-only MP4 brand
    truncated = make_broken("truncated", tmp_path / "tr.mp4").read_bytes()
    _assert_4xx(_upload(srv, "tr.mp4", truncated), 422, "truncated")
    fake = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(range(256)) * 64  # MP4 magic, no video
    _assert_4xx(_upload(srv, "fake.mp4", fake), 422, "upload")


def test_too_large_uploads(srv):
    big = b"\x00\x00\x00\x18ftypisom" + b"\x00" * (serve_harness.MAX_UPLOAD + 1)
    _assert_4xx(_upload(srv, "big.mp4", big), 413, "limit")

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        yield (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.mp4\"\r\n"
               b"Content-Type: video/mp4\r\n\r\n\x00\x00\x00\x18ftypisom")
        for _ in range(serve_harness.MAX_UPLOAD // (1 << 16) + 4):
            yield b"\x00" * (1 << 16)
        yield b"\r\n--B--\r\n"

    r = srv.post("/search", data=chunks(), headers={"Content-Type": "multipart/form-data; boundary=B"})
    _assert_4xx(r, 413, "limit")
    assert srv.get("/healthz").status_code == 200  # and the server is fine afterwards


@pytest.mark.parametrize("kw,status,word", [
    ({"data": b"{bad", "headers": {"Content-Type": "application/json"}}, 400, "JSON"),
    ({"data": b"[1, 2]", "headers": {"Content-Type": "application/json"}}, 400, "object"),
    ({"data": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}, 400, "JSON"),
    ({"json": {}}, 400, "exactly one"),
    ({"json": {"video_id": "0" * 32, "uri": "s3://b/k"}}, 400, "exactly one"),
    ({"json": {"video_id": "0" * 32, "extra": 1}}, 400, "unknown field"),
    ({"json": {"video_id": "../../etc/passwd"}}, 400, "hex"),
    ({"json": {"video_id": "A" * 32}}, 400, "hex"),
    ({"json": {"video_id": 12345}}, 400, "hex"),
    ({"json": {"video_id": "0" * 32}}, 404, "not in the index"),
    ({"json": {"uri": "/etc/passwd"}}, 400, "s3://"),
    ({"json": {"uri": "file:///etc/passwd"}}, 400, "s3://"),
    ({"json": {"uri": "http://127.0.0.1:1/x.mp4"}}, 400, "s3://"),
    ({"json": {"uri": "s3://"}}, 400, "s3://"),
    ({"json": {"uri": ["s3://b/k"]}}, 400, "s3://"),
    ({"json": {"video_id": "0" * 32, "top": 0}}, 400, "top"),
    ({"json": {"video_id": "0" * 32, "top": "many"}}, 400, "top"),
    ({"json": {"video_id": "0" * 32, "top": True}}, 400, "top"),
    ({"json": {"video_id": "0" * 32, "include_none": "perhaps"}}, 400, "include_none"),
    ({"data": b"video_id=zz", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 400, "hex"),
    ({"data": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "multipart"),
    ({"data": b"--X\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=X"}}, 400, ""),
    ({"data": b"x", "headers": {"Content-Type": "multipart/form-data"}}, 400, "boundary"),
    ({"files": {"file": ("a.mp4", b"\x00"), "video_id": (None, "0" * 32)}}, 400, "exactly one"),
    ({"data": {"file": "not a file part"}}, 400, "file part"),
])
def test_search_refusals(srv, kw, status, word):
    _assert_4xx(srv.post("/search", **kw), status, word)


@pytest.mark.parametrize("method,path,status", [
    ("get", "/videos/" + "0" * 32, 404),
    ("get", "/videos/ABCDEF", 422),
    ("get", "/videos/" + "g" * 32, 422),
    ("get", "/media/" + "0" * 32, 404),
    ("get", "/media/..%2F..%2F..%2Fetc%2Fpasswd", 404),
    ("get", "/media/../../../etc/passwd", 404),
    ("get", "/media/%00", 422),
    ("get", "/thumbs/" + "0" * 32, 404),
    ("get", "/thumbs/{a}?t=-1", 422),
    ("get", "/thumbs/{a}?t=nan", 422),
    ("get", "/thumbs/{a}?t=inf", 422),
    ("get", "/thumbs/{a}?t=abc", 422),
    ("get", "/videos?limit=0", 422),
    ("get", "/videos?limit=abc", 422),
    ("get", "/videos?status=weird", 422),
    ("get", "/videos/{a}/matches?top=1000", 422),
    ("delete", "/videos/" + "0" * 32, 404),
    ("delete", "/videos/not-an-id", 422),
    ("get", "/reviews/queue?limit=-5", 422),
    ("get", "/reviews?decision=maybe", 422),
    ("get", "/no/such/endpoint", 404),
    ("put", "/videos", 405),
])
def test_bad_ids_and_parameters(srv, method, path, status):
    path = path.replace("{a}", srv.ids["a.mp4"])
    r = srv.session.request(method, srv.url + path, timeout=60)
    _assert_4xx(r, status)


@pytest.mark.parametrize("body,status", [
    (b"{bad json", 422),
    (b"[]", 422),
    (b'{"query_id": "x", "source_id": "y", "decision": "rejected"}', 422),
    (b'{"query_id": "' + b"0" * 32 + b'", "source_id": "' + b"1" * 32 + b'", "decision": "maybe"}', 422),
    (b'{"query_id": "' + b"0" * 32 + b'", "source_id": "' + b"1" * 32 + b'", "decision": "rejected", "x": 1}', 422),
    (b'{"query_id": "' + b"0" * 32 + b'", "source_id": "' + b"0" * 32 + b'", "decision": "rejected"}', 400),
    (b'{"query_id": "' + b"0" * 32 + b'", "source_id": "' + b"1" * 32 + b'", "decision": "rejected"}', 404),
])
def test_review_refusals(srv, body, status):
    r = srv.post("/reviews", data=body, headers={"Content-Type": "application/json"})
    _assert_4xx(r, status)


def test_oversized_json_body(srv):
    r = srv.post("/reviews", data=b"{" + b" " * (1 << 20) + b"}", headers={"Content-Type": "application/json"})
    _assert_4xx(r, 413)


def test_chunked_bodies_are_capped_while_they_stream(srv):
    """No Content-Length: /reviews (a pydantic body) and the JSON form of /search stop reading at
    their limit (64 KB) and answer 413, the server unharmed."""
    def chunks(total: int = 32 << 20):
        yield b'{"note": "'
        for _ in range(total // (1 << 16)):
            yield b"x" * (1 << 16)
        yield b'"}'

    for path in ("/reviews", "/search"):
        try:
            r = srv.post(path, data=chunks(), headers={"Content-Type": "application/json"})
        except requests.ConnectionError:  # the server may close before the client is done sending
            continue
        _assert_4xx(r, 413, "limit")
    assert srv.get("/healthz").status_code == 200


@pytest.mark.parametrize("path", ["/reviews", "/search"])
def test_deep_and_long_json_is_a_400(srv, path):
    for body in (b"[" * 20_000 + b"]" * 20_000, b'{"video_id": ' + b"9" * 5_000 + b"}"):
        _assert_4xx(srv.post(path, data=body, headers={"Content-Type": "application/json"}), 400, "JSON")


def test_a_range_of_thousands_of_digits_is_a_416(srv):
    r = srv.get(f"/media/{srv.ids['a.mp4']}", headers={"Range": "bytes=" + "9" * 5_000 + "-"})
    _assert_4xx(r, 416, "range")


def test_odd_range_headers_never_fail(srv):
    vid = srv.ids["a.mp4"]
    size = srv.files["a.mp4"].stat().st_size
    for h in ("bytes=abc", "bytes=5-1", "bytes=0-1,5-6", "pages=1-2", "bytes=" + "9" * 40 + "-"):
        r = srv.get(f"/media/{vid}", headers={"Range": h})
        assert r.status_code in (200, 206, 416), (h, r.status_code)
        if r.status_code == 200:
            assert len(r.content) == size


def test_a_foreign_host_is_refused_through_the_proxy(srv):
    """DNS rebinding through Serve's real proxy: the app is bound to 127.0.0.1, so a page on
    another name gets 400 on every path (the key does not help); the loopback names still pass."""
    for path in ("/", "/healthz", "/videos"):
        _assert_4xx(srv.get(path, headers={"Host": "rebind.evil.example"}), 400, "not allowed")
    assert srv.get("/healthz", headers={"Host": "localhost"}).status_code == 200


# ---------------------------------------------------------------------------------------------
# schemathesis over the app's own OpenAPI schema


def test_openapi_fuzz_never_a_server_error(srv):
    """Every operation of /openapi.json, with data that fits the schema and data that breaks it:
    never a 5xx, every 4xx a JSON error, and every answer matches the response schema documented
    for its status (the routes' pydantic response models, serve/responses.py).

    schemathesis' pytest plugin does not run under this pytest, so its strategies are driven with
    hypothesis directly, one operation and generation mode at a time."""
    from hypothesis import given
    from schemathesis.specs.openapi.checks import response_schema_conformance

    schema = schemathesis.openapi.from_url(srv.url + "/openapi.json", headers={"X-API-Key": serve_harness.API_KEY},
                                           timeout=60)
    failures: list[str] = []
    calls = {"n": 0}
    operations = [r.ok() for r in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /search", "GET /videos", "GET /videos/{video_id}", "GET /videos/{video_id}/matches",
        "DELETE /videos/{video_id}", "GET /media/{video_id}", "GET /thumbs/{video_id}", "POST /reviews",
        "GET /reviews/queue", "GET /healthz"}
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def run(case):
                calls["n"] += 1
                r = case.call(base_url=srv.url, headers={"X-API-Key": serve_harness.API_KEY}, timeout=120)
                if r.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} {mode.value}: {r.status_code} "
                                    f"{r.text[:200]}")
                elif r.status_code >= 400 and case.method.upper() != "HEAD":
                    try:
                        ok = isinstance(r.json().get("error"), str)
                    except ValueError:
                        ok = False
                    if not ok:
                        failures.append(f"{case.method} {case.formatted_path}: {r.status_code} without a JSON "
                                        f"error: {r.text[:200]}")
                if r.status_code < 500 and case.method.upper() != "HEAD":
                    try:
                        case.validate_response(r, checks=[response_schema_conformance])
                    except (AssertionError, BaseExceptionGroup) as e:  # a Failure, or a FailureGroup of them
                        failures.append(f"{case.method} {case.formatted_path}: {r.status_code} not as documented: "
                                        f"{str(e)[:300]}")

            try:
                run()
            except Unsatisfiable:
                # nothing in the operation can be made invalid (e.g. no parameters at all)
                assert mode == GenerationMode.NEGATIVE, f"{op.method} {op.path}"
    assert not failures, "\n".join(failures[:20])
    assert calls["n"] >= len(operations) * 5  # it really sent requests
    assert srv.get("/healthz").json()["videos"] >= serve_harness.N_VIDEOS - 1  # fuzzing deleted nothing real
