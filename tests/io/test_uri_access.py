"""A search ``{"uri": "s3://..."}`` reads only allowed objects, answers every "where" refusal alike,
and sniffs S3 objects like uploads before any decoder runs (astradup/uris.py, serve/search_service.py).

The service's search logic runs here without Ray Serve: the deployment's own class, its S3 reads
against the session's moto server (tests/conftest.py), its index a status record written through
ShardStore, and its decoder replaced by a recorder (nothing here needs to be decoded).
"""
from __future__ import annotations

import inspect
import types

import pytest

from astradup.config import load_config
from astradup.errors import ConfigError
from astradup.store.shards import ShardStore
from astradup.uris import AllowList, BadUri, split_s3
from serve.settings import ServeSettings
from tests.media import make_video

LIMIT = 2 << 20
DASH = (b'<?xml version="1.0" encoding="UTF-8"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static">'
        b"<Period><AdaptationSet><Representation id=\"1\"><BaseURL>file:///etc/passwd</BaseURL>"
        b"</Representation></AdaptationSet></Period></MPD>\n")
HLS = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"


# ---------------------------------------------------------------------------------------------
# parsing and matching


@pytest.mark.parametrize("uri", [
    "s3://b/../other/x.mp4", "s3://bkt/a/../../other/x.mp4", "s3://bkt//x.mp4", "s3://bkt/a//x.mp4",
    "s3://bkt/./x.mp4", "s3://bkt/a/", "s3://bkt/", "s3://bkt", "s3://BKT/x.mp4", "s3://bkt/x\x00.mp4",
    "s3://bkt/x.mp4?versionId=abc", "s3://b..k/x.mp4", "s3:///x.mp4", "/etc/passwd", "file:///etc/passwd",
    "s3://bkt/" + "k" * 2000,
])
def test_malformed_uris_are_refused(uri):
    with pytest.raises(BadUri):
        split_s3(uri)


def test_allow_list_matches_whole_segments():
    allow = AllowList.parse(["s3://corpus/pub", "s3://whole-bucket/", "s3://other/a/b/"])
    assert allow.allows(*split_s3("s3://corpus/pub/x.mp4"))
    assert allow.allows(*split_s3("s3://corpus/pub/deep/er/x.mp4"))
    assert not allow.allows(*split_s3("s3://corpus/public/x.mp4"))  # not a raw string prefix
    assert not allow.allows(*split_s3("s3://corpus/pub-other/x.mp4"))
    assert not allow.allows(*split_s3("s3://corpus/x.mp4"))
    assert allow.allows(*split_s3("s3://whole-bucket/any/key.mp4"))
    assert allow.allows(*split_s3("s3://other/a/b/c.mp4")) and not allow.allows(*split_s3("s3://other/a/c.mp4"))
    assert not allow.allows(*split_s3("s3://corpus-2/pub/x.mp4"))
    assert not AllowList().allows("corpus", "pub/x.mp4")  # empty: nothing


def test_default_allow_list_is_the_indexed_buckets():
    allow = AllowList.from_indexed(["s3://corpus/videos/a.mp4", "/local/b.mp4", "", "s3://corpus/v/b.mp4",
                                    "s3://archive/2020/c.mp4", "s3://bad//key.mp4"])
    assert allow.describe() == ["s3://archive/", "s3://corpus/"]
    assert allow.allows("corpus", "queries/q.mp4") and not allow.allows("bad", "key.mp4")
    assert AllowList.from_indexed(["/local/only.mp4"]).entries == frozenset()


def test_the_store_keeps_the_indexed_buckets_as_shards_arrive(tmp_path):
    """The default allow-list comes from the catalog's incremental index, not a listing of every row."""
    store = ShardStore(str(tmp_path / "shards"))
    store.write_status([{"video_id": "a" * 32, "uri": "s3://lib-one/x/a.mp4", "status": "ok"},
                        {"video_id": "b" * 32, "uri": "/local/b.mp4", "status": "ok"}])
    assert store.indexed_buckets() == ["s3://lib-one"]
    other = ShardStore(str(tmp_path / "shards"))  # another process indexing a second bucket
    other.write_status([{"video_id": "c" * 32, "uri": "s3://lib-two/c.mp4", "status": "failed", "error": "x"}])
    assert store.indexed_buckets() == ["s3://lib-one", "s3://lib-two"]
    allow = AllowList.from_indexed(store.indexed_buckets())
    assert allow.allows("lib-two", "any/key.mp4") and not allow.allows("lib-three", "k.mp4")


def test_config_allowed_uris_are_validated(tmp_path):
    cfg = load_config(overrides={"search": {"allowed_uris": ["s3://corpus/pub/", "s3://other"]}}, environ={})
    assert cfg.search.allowed_uris == ["s3://corpus/pub/", "s3://other"]
    assert load_config(environ={}).search.allowed_uris == []
    env = load_config(environ={"ASTRADUP_SEARCH__ALLOWED_URIS": "[s3://corpus/pub]"})
    assert env.search.allowed_uris == ["s3://corpus/pub"]
    for bad in (["s3://corpus/../x"], ["/data/videos"], ["s3://Corpus"], [7]):
        with pytest.raises(ConfigError, match="allowed_uris"):
            load_config(overrides={"search": {"allowed_uris": bad}}, environ={})
    with pytest.raises(ConfigError, match="must be a list"):  # not split into characters
        load_config(environ={"ASTRADUP_SEARCH__ALLOWED_URIS": "s3://corpus"})


# ---------------------------------------------------------------------------------------------
# the service against a local S3: one bucket indexed from, one not


@pytest.fixture()
def two_buckets(s3_endpoint, tmp_path):
    """(fs, video bytes): s3://uri-indexed holds the indexed corpus and a query, s3://uri-other (never
    indexed) holds a copy of the same query."""
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    for b in ("uri-indexed", "uri-other"):
        if not fs.exists(b):
            fs.mkdir(b)
    video = make_video(tmp_path / "q.mp4", seconds=2, size=(96, 64), audio=None, seed=3).read_bytes()
    fs.pipe({"uri-indexed/videos/a.mp4": video, "uri-indexed/queries/q.mp4": video,
             "uri-other/secret/q.mp4": video, "uri-indexed/queries/manifest.mp4": DASH,
             "uri-indexed/queries/list.mp4": HLS, "uri-indexed/queries/big.mp4": video[:64] + b"\0" * LIMIT,
             "uri-indexed/queries/empty.mp4": b""})
    return fs, video


def _service(tmp_path, s3_endpoint, allowed: list[str] | None = None):
    """The SearchService class's own code, without Serve: the catalog is a ShardStore whose status
    says the index was built from s3://uri-indexed; decoding is replaced by a recorder."""
    from serve.search_service import SearchService

    shards = ShardStore(str(tmp_path / "shards"))
    shards.write_status([{"video_id": "a" * 32, "uri": "s3://uri-indexed/videos/a.mp4", "status": "ok",
                          "size": 100, "duration": 2.0},
                         {"video_id": "b" * 32, "uri": str(tmp_path / "local.mp4"), "status": "ok", "size": 1}])
    cls = SearchService.func_or_class
    svc = cls.__new__(cls)
    svc.cfg = load_config(overrides={"s3_endpoint": s3_endpoint, "data_dir": str(tmp_path),
                                     "search": {"allowed_uris": allowed or []}}, environ={})
    svc.settings = ServeSettings(max_upload_bytes=LIMIT)
    svc.catalog = types.SimpleNamespace(shards=shards)
    svc._init_uri_access()
    svc.decoded = []

    def fake_query(path, uri):
        with open(path, "rb") as f:
            svc.decoded.append((uri, path, f.read()))
        return "query"

    svc._query = fake_query
    svc._answer = lambda q, kind, top, include_none, t0, name="": {"kind": kind, "name": name}
    # The method's own body, without its wrappers (in-flight gauge, decode slots: not under test).
    svc.search_uri = inspect.unwrap(cls.search_uri).__get__(svc)
    return svc


def test_uri_outside_the_allow_list_reads_like_a_missing_object(two_buckets, tmp_path, s3_endpoint):
    from serve.search_service import URI_REFUSED

    svc = _service(tmp_path, s3_endpoint)
    other = svc.search_uri("s3://uri-other/secret/q.mp4", 5)  # exists, but never indexed from
    missing = svc.search_uri("s3://uri-indexed/queries/nope.mp4", 5)  # allowed bucket, no such key
    no_bucket = svc.search_uri("s3://uri-nosuchbucket/x.mp4", 5)
    shards_like = svc.search_uri("s3://uri-indexed/queries", 5)  # a "folder"
    assert other == missing == no_bucket == shards_like == {"error": URI_REFUSED, "status": 403}
    assert svc.decoded == []
    # inside the allow-list the object is read, sniffed and handed on, byte for byte
    assert svc.search_uri("s3://uri-indexed/queries/q.mp4", 5) == {"kind": "uri", "name": "q.mp4"}
    (uri, path, data), = svc.decoded
    assert uri == "s3://uri-indexed/queries/q.mp4" and data == two_buckets[1] and path.endswith(".mp4")
    assert svc.search_uri("s3://uri-indexed/../uri-other/secret/q.mp4", 5)["status"] == 400


def test_configured_allow_list_replaces_the_default(two_buckets, tmp_path, s3_endpoint):
    from serve.search_service import URI_REFUSED

    svc = _service(tmp_path, s3_endpoint, allowed=["s3://uri-other/secret"])
    assert svc.search_uri("s3://uri-other/secret/q.mp4", 5) == {"kind": "uri", "name": "q.mp4"}
    assert svc.search_uri("s3://uri-indexed/queries/q.mp4", 5) == {"error": URI_REFUSED, "status": 403}


def test_allowed_object_that_is_not_a_video_is_refused_before_decoding(two_buckets, tmp_path, s3_endpoint):
    svc = _service(tmp_path, s3_endpoint)
    for name in ("manifest.mp4", "list.mp4"):
        r = svc.search_uri(f"s3://uri-indexed/queries/{name}", 5)
        assert r["status"] == 415 and "not a media file" in r["error"], r
    big = svc.search_uri("s3://uri-indexed/queries/big.mp4", 5)
    assert big["status"] == 413 and str(LIMIT + 64) not in big["error"]  # the limit, never the object's size
    assert svc.search_uri("s3://uri-indexed/queries/empty.mp4", 5)["status"] == 422
    assert svc.decoded == []  # no decoder saw any of them
