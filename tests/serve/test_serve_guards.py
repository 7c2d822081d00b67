"""The service's guards that need no running Ray: decode slots (503 + Retry-After while a search
by video_id still answers), the bind and Host checks (no open API beyond loopback by accident, no
DNS rebinding), and an over-limit chunked upload staying a 413 through the form parser.

Every hostile input is built here: a decode made slow with an Event, Host headers as strings, a
chunked multipart stream from a generator."""
from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.datastructures import Headers
from starlette.formparsers import MultiPartParser

from astradup.search import Searcher
from serve import state
from serve.hosts import BindRefused, HostPolicy, check_bind, host_name, is_loopback
from serve.settings import ServeSettings, settings_from_env
from serve.slots import DecodeSlots

VID = "0123456789abcdef0123456789abcdef"
MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"

# ---------------------------------------------------------------------------------------------
# decode slots


class _NoVectors(Searcher):
    """The real Searcher over a faked catalog, with no vector store to search: no match."""

    def search_common(self, *a, **kw):
        return [], []


def _service(slots: int):
    """A SearchService instance without Ray, the store or the embedder: only what the upload and
    video_id paths touch, faked. Its decode blocks until ``release`` is set."""
    from serve.search_service import SearchService

    cls = SearchService.func_or_class
    svc = cls.__new__(cls)
    svc.settings = ServeSettings(decode_slots=slots, decode_retry_after_s=7)
    svc.decodes = DecodeSlots(svc.settings.decode_slots, svc.settings.decode_retry_after_s)
    feats = SimpleNamespace(uri="s3://b/x.mp4", meta={"duration": 3.0}, has_audio=False, timestamps=np.zeros(3),
                            video_id=VID)
    svc.catalog = SimpleNamespace(shards=SimpleNamespace(load_features=lambda ids: {VID: feats},
                                                         latest_status=lambda: {}, statuses_of=lambda ids: {}))
    svc.reviews = SimpleNamespace(decisions_for=lambda vid: {})
    svc.searcher = _NoVectors(None, svc.catalog)
    started, release = threading.Event(), threading.Event()

    def slow_query(path: str, uri: str):
        started.set()
        assert release.wait(30), "the test never released the decode"
        return "decoded"

    svc._query = slow_query
    svc._answer = lambda q, kind, top, include_none, t0, name="": {"query": {"kind": kind}, "matches": []}
    return svc, started, release


def test_a_second_decode_is_a_503_with_retry_after_while_video_search_answers():
    svc, started, release = _service(slots=1)
    first: dict = {}
    t = threading.Thread(target=lambda: first.update(svc.search_upload(MP4_HEAD, "MP4", 5)))
    t.start()
    try:
        assert started.wait(10)
        second = svc.search_upload(MP4_HEAD, "MP4", 5)
        assert second["status"] == 503 and second["retry_after"] == 7, second
        assert "busy" in second["error"] and "video_id" in second["error"]
        assert svc.search_uri("s3://bucket/q.mp4", 5)["status"] == 503  # uri searches share the slots
        by_id = svc.search_video(VID, 5)  # not behind the decode
        assert "error" not in by_id and by_id["query"]["video_id"] == VID
        assert asyncio.run(svc.ping()) == {"ok": True}
    finally:
        release.set()
        t.join(30)
    assert first == {"query": {"kind": "upload"}, "matches": []}
    # the slot is free again once the decode is done, even after a failure
    svc._query = lambda path, uri: (_ for _ in ()).throw(RuntimeError("boom"))
    with pytest.raises(RuntimeError):
        svc.search_upload(MP4_HEAD, "MP4", 5)
    svc._query = lambda path, uri: "decoded"
    assert "error" not in svc.search_upload(MP4_HEAD, "MP4", 5)


def test_the_gateway_passes_retry_after_on():
    from serve.api_errors import ApiError, replica_answer

    async def busy() -> dict:
        return DecodeSlots(2, 9).busy()

    with pytest.raises(ApiError) as e:
        asyncio.run(replica_answer(busy()))
    assert e.value.status == 503 and e.value.headers == {"Retry-After": "9"}


def test_decode_slot_settings_and_replica_request_room(tmp_path):
    from astradup.config import load_config
    from serve.app import deployment_options

    assert ServeSettings().decode_slots == 2
    assert settings_from_env({"ASTRADUP_DECODE_SLOTS": "3"}).decode_slots == 3
    for bad in ("0", "two", "-1"):
        with pytest.raises(ValueError, match="ASTRADUP_DECODE_SLOTS"):
            settings_from_env({"ASTRADUP_DECODE_SLOTS": bad})
    with pytest.raises(ValueError):
        ServeSettings(decode_slots=0)
    cfg = load_config(overrides={"data_dir": str(tmp_path)}, environ={})
    opts = deployment_options(cfg, ServeSettings(decode_slots=3))["SearchService"]
    # room for searches by video_id and pings while every slot decodes
    assert opts["max_ongoing_requests"] > 3


# ---------------------------------------------------------------------------------------------
# bind and Host


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_loopback_binds_need_no_key(host):
    assert is_loopback(host)
    check_bind(host, api_key="")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.1.2.3", "myhost.lan"])
def test_a_bind_beyond_loopback_needs_a_key_or_insecure(host):
    with pytest.raises(BindRefused, match="API key"):
        check_bind(host, api_key="")
    check_bind(host, api_key="k")
    check_bind(host, api_key="", insecure=True)


def test_serve_cli_refuses_an_open_bind_before_starting_anything(monkeypatch, capsys):
    from astradup import cli
    from astradup.errors import ConfigError
    from serve import local

    monkeypatch.delenv("ASTRADUP_API_KEY", raising=False)

    def reached(cfg):  # the first step of local.start after the bind check
        raise ConfigError("start reached")

    monkeypatch.setattr(local, "check_lite_free", reached)
    assert cli.main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "without an API key" in err and "--insecure" in err, err
    assert cli.main(["serve", "--host", "0.0.0.0", "--insecure"]) == 2
    assert "start reached" in capsys.readouterr().err
    monkeypatch.setenv("ASTRADUP_API_KEY", "k")
    assert cli.main(["serve", "--host", "0.0.0.0"]) == 2
    assert "start reached" in capsys.readouterr().err


@pytest.mark.parametrize("header,name", [
    ("localhost:8000", "localhost"), ("LOCALHOST", "localhost"), ("127.0.0.1", "127.0.0.1"),
    ("[::1]:8000", "::1"), ("[::1]", "::1"), ("Example.COM.:80", "example.com"),
    (None, None), ("", None), ("::1", None), ("[::1", None), ("[::1]x", None), ("a b", None),
    ("host:port", None), ("x:123456", None), ("[evil.example]:80", None), ("a@b", None),
])
def test_host_name(header, name):
    assert host_name(header) == name


@pytest.mark.parametrize("bind,allowed,header,ok", [
    ("127.0.0.1", (), "127.0.0.1:8000", True), ("127.0.0.1", (), "localhost:1234", True),
    ("127.0.0.1", (), "[::1]:8000", True),
    ("127.0.0.1", (), "evil.example", False),  # DNS rebinding: the attacker's name
    ("127.0.0.1", (), "evil.example:8000", False), ("127.0.0.1", (), "10.0.0.5:8000", False),
    ("127.0.0.1", (), None, False), ("127.0.0.1", (), "localhost.evil.example", False),
    ("127.0.0.1", ("dedup.internal",), "dedup.internal:8000", True),
    ("10.0.0.5", (), "10.0.0.5:8000", True), ("10.0.0.5", (), "10.0.0.6:8000", False),
    ("10.0.0.5", (), "evil.example", False), ("10.0.0.5", (), "localhost", True),
    ("0.0.0.0", (), "192.168.1.20:8000", True), ("0.0.0.0", (), "[fe80::1]:8000", True),
    ("0.0.0.0", (), "evil.example:8000", False),
    ("0.0.0.0", ("Dedup.Example.com",), "dedup.example.com", True),
    ("0.0.0.0", ("*",), "anything.example", True),
])
def test_host_policy(bind, allowed, header, ok):
    assert HostPolicy(bind, allowed).allows(header) is ok


def test_allowed_hosts_from_env():
    s = settings_from_env({"ASTRADUP_ALLOWED_HOSTS": " a.example , b.example,,"})
    assert s.allowed_hosts == ("a.example", "b.example") and s.bind_host == "127.0.0.1"


def test_the_gateway_answers_a_foreign_host_400_on_every_path(monkeypatch):
    """The gateway's middleware, driven without Ray: a rebinding page's Host is refused before the
    API key, the page or any route; the loopback names pass (here to a 404 / the key check)."""
    from serve.gateway import api

    monkeypatch.setitem(state.GATEWAY, "hosts", HostPolicy("127.0.0.1"))
    monkeypatch.setitem(state.GATEWAY, "api_key", "")
    client = TestClient(api)
    for path in ("/", "/healthz", "/videos", "/nope"):
        r = client.get(path, headers={"Host": "evil.example:8000"})
        assert r.status_code == 400, (path, r.text)
        assert "Host 'evil.example:8000' not allowed" in r.json()["error"]
    r = client.post("/reviews", json={}, headers={"Host": "evil.example"})
    assert r.status_code == 400 and "not allowed" in r.json()["error"]
    assert client.get("/nope", headers={"Host": "127.0.0.1:8000"}).status_code == 404
    assert client.get("/nope", headers={"Host": "localhost"}).status_code == 404
    monkeypatch.setitem(state.GATEWAY, "hosts", HostPolicy("0.0.0.0", ("dedup.example.com",)))
    assert client.get("/nope", headers={"Host": "dedup.example.com"}).status_code == 404
    assert client.get("/nope", headers={"Host": "evil.example"}).status_code == 400


# ---------------------------------------------------------------------------------------------
# request bodies: an over-limit chunked upload is a 413 through the form parser


def test_an_over_limit_chunked_upload_stays_a_413():
    """BodyLimit raises BodyTooLarge from ``receive`` while MultiPartParser reads; the gateway's
    parse wrapper used to turn every parser exception into "400 malformed form body"."""
    from serve.bodies import BodyTooLarge
    from serve.search_form import parse_form

    async def chunked():
        yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="x.mp4"\r\n\r\n' + MP4_HEAD
        for _ in range(4):
            yield b"\x00" * 1024
        raise BodyTooLarge(4096)  # what BodyLimit's receive does once past the route's limit

    async def parse():
        parser = MultiPartParser(Headers({"content-type": "multipart/form-data; boundary=B"}), chunked())
        return await parse_form(parser)

    with pytest.raises(BodyTooLarge) as e:
        asyncio.run(parse())
    assert e.value.status_code == 413 and "limit" in e.value.detail


def test_uploads_held_by_a_gateway_are_bounded_by_the_decode_slots():
    """A gateway holds an upload in memory until the search replica answers: with every slot taken,
    one more upload is refused 503 + Retry-After before its bytes are read into memory."""
    from serve.api_errors import ApiError
    from serve.gateway import Gateway
    from tests.serve_harness import multipart_search_request

    cls = Gateway.func_or_class
    gw = cls.__new__(cls)
    gw.settings = ServeSettings(decode_slots=1, decode_retry_after_s=9)
    gw.cfg = SimpleNamespace(search=SimpleNamespace(top=5))
    gw.metrics = SimpleNamespace(search=lambda *a: None)
    gw.uploads = DecodeSlots(1, 9)
    body = (b'--B\r\nContent-Disposition: form-data; name="file"; filename="x.mp4"\r\n'
            b"Content-Type: video/mp4\r\n\r\n" + MP4_HEAD + b"\x00" * 64 + b"\r\n--B--\r\n")

    def request():
        return multipart_search_request(body)

    async def run() -> None:
        release = asyncio.Event()
        entered = asyncio.Event()

        async def answer() -> dict:
            entered.set()
            await release.wait()
            return {"query": {}, "matches": []}

        gw.search = SimpleNamespace(search_upload=SimpleNamespace(remote=lambda *a: answer()))
        first = asyncio.create_task(cls.search(gw, request()))
        await entered.wait()
        with pytest.raises(ApiError) as e:
            await cls.search(gw, request())
        assert e.value.status == 503 and e.value.headers == {"Retry-After": "9"}
        release.set()
        assert (await first)["matches"] == []
        assert gw.uploads.try_take()  # the slot came back

    asyncio.run(run())
