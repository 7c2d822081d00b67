"""The HTTP service: its pure pieces (container sniffing, byte ranges, verdict storage, settings), then
the real Ray Serve app on 127.0.0.1 over a small indexed corpus (tests/serve_harness.py)."""
from __future__ import annotations

import contextlib
import io
import os
import re
import time

import pytest
from PIL import Image

from astradup.reviews import CONFIRMED, REJECTED, ReviewStore
from serve.ranges import RangeNotSatisfiable, parse_range
from serve.settings import ServeSettings, config_from_env, settings_from_env
from tests import serve_harness
from tests.serve_harness import srv  # noqa: F401  (the shared running app)
from tests.media import make_broken, make_video

# ---------------------------------------------------------------------------------------------
# pure pieces


@pytest.mark.parametrize("header,size,want", [
    (None, 100, None), ("bytes=0-9", 100, (0, 9)), ("bytes=90-", 100, (90, 99)), ("bytes=-10", 100, (90, 99)),
    ("bytes=-1000", 100, (0, 99)), ("bytes=50-5000", 100, (50, 99)), ("bytes=0-0", 1, (0, 0)),
    ("bytes=0-9,20-29", 100, None), ("items=0-9", 100, None), ("bytes=9-3", 100, None), ("bytes=x-y", 100, None),
    ("bytes=-", 100, None),
])
def test_parse_range(header, size, want):
    assert parse_range(header, size) == want


@pytest.mark.parametrize("header,size", [("bytes=100-", 100), ("bytes=-0", 100), ("bytes=0-", 0)])
def test_parse_range_unsatisfiable(header, size):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


def test_review_store_pairs_are_unordered_and_persist(tmp_path):
    a, b, c = "a" * 32, "b" * 32, "c" * 32
    db = tmp_path / "r.sqlite"
    st = ReviewStore(db)
    assert st.get(a, b) is None and st.decisions_for(a) == {}
    v0 = st.version()
    st.record(a, b, REJECTED, "different match")
    assert st.version() != v0
    assert st.get(b, a).decision == REJECTED  # the other way round is the same pair
    st.record(b, a, CONFIRMED)  # a later verdict replaces the earlier one
    st.record(a, c, REJECTED)
    st.close()
    st = ReviewStore(db)  # a new process would see the same
    assert st.get(a, b).decision == CONFIRMED and st.get(a, b).query_id == b
    assert st.decisions_for(a) == {b: CONFIRMED, c: REJECTED}
    assert st.decisions_for(c) == {a: REJECTED}
    assert [r.decision for r in st.all(REJECTED)] == [REJECTED]
    assert st.forget(c, a) and not st.forget(c, a)
    for bad in (("A" * 32, b, REJECTED), (a, "../etc/passwd", REJECTED), (a, a, REJECTED), (a, b, "maybe")):
        with pytest.raises(ValueError):
            st.record(*bad)
    with pytest.raises(ValueError):
        st.record(a, b, REJECTED, "x" * 501)


def test_plain_makes_records_json_safe():
    import json

    import numpy as np

    from astradup.plain import plain

    got = plain({"score": np.float32(0.5), "segs": ({"t": np.int64(3)},), "v": np.zeros(2, np.float32), 1: "x"})
    assert got == {"score": 0.5, "segs": [{"t": 3}], "v": [0.0, 0.0], "1": "x"}
    assert type(got["score"]) is float and type(got["segs"][0]["t"]) is int
    json.dumps(got)


def test_deployment_options_gpu_autoscaling_and_lite_single_replica(tmp_path):
    from astradup.config import load_config
    from astradup.io.remote import absolute_paths
    from serve.app import deployment_options

    lite = load_config(overrides={"data_dir": str(tmp_path)}, environ={})
    opts = deployment_options(lite, ServeSettings(search_replicas=4, embedder_max_replicas=3))
    assert opts["SearchService"]["num_replicas"] == 1  # a Lite file: one process only
    assert opts["FrameEmbedder"]["ray_actor_options"] == {"num_cpus": 1.0}
    assert opts["FrameEmbedder"]["autoscaling_config"]["max_replicas"] == 3
    server = load_config(overrides={"data_dir": str(tmp_path), "milvus_uri": "http://127.0.0.1:19530",
                                    "pipeline": {"embed_num_gpus": 0.5}}, environ={})
    opts = deployment_options(server, ServeSettings(search_replicas=4, embedder_max_replicas=1))
    assert opts["SearchService"]["num_replicas"] == 4
    assert opts["FrameEmbedder"] == {"ray_actor_options": {"num_gpus": 0.5, "num_cpus": 0}, "num_replicas": 1}
    cuda = load_config(overrides={"embedder": {"device": "cuda"}}, environ={})
    assert deployment_options(cuda, ServeSettings())["FrameEmbedder"]["ray_actor_options"]["num_gpus"] == 1.0
    rel = load_config(overrides={"data_dir": "rel/data", "milvus_uri": "rel/m.db"}, environ={})
    assert absolute_paths(rel).data_dir.startswith("/") and absolute_paths(rel).milvus_uri.startswith("/")


def test_openapi_describes_every_response():
    """Every operation documents its success body (a response model, or the media type of a file)
    and its refusals as the JSON error body; read from the app's schema, no server needed."""
    from serve.gateway import api

    doc = api.openapi()
    ops = [(m.upper(), p, op) for p, item in doc["paths"].items() for m, op in item.items()]
    assert len(ops) >= 12
    for method, path, op in ops:
        ok = {k: v for k, v in op["responses"].items() if k.startswith("2")}
        assert ok, f"{method} {path}: no success response"
        for code, r in ok.items():
            content = r.get("content") or {}
            json_schema = (content.get("application/json") or {}).get("schema", {})
            assert json_schema.get("$ref", "").startswith("#/components/schemas/") or \
                (content and "application/json" not in content), f"{method} {path} {code}: {r}"
        for code in ("400", "422"):
            ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorOut"), f"{method} {path} {code}: {ref}"
    assert doc["components"]["schemas"]["SearchOut"]["required"] == ["query", "matches", "common", "took_ms"]


def test_settings_from_env_and_config_ignores_them():
    env = {"ASTRADUP_API_KEY": "k", "ASTRADUP_MAX_UPLOAD_MB": "1.5", "ASTRADUP_SEARCH__TOP": "3"}
    s = settings_from_env(env)
    assert s.api_key == "k" and s.max_upload_bytes == int(1.5 * (1 << 20))
    assert settings_from_env({}).api_key == "" and settings_from_env({}).max_upload_bytes == 512 << 20
    cfg = config_from_env(environ=env)  # load_config alone would reject the two service variables
    assert cfg.search.top == 3
    with pytest.raises(ValueError):
        settings_from_env({"ASTRADUP_MAX_UPLOAD_MB": "lots"})
    with pytest.raises(ValueError):
        ServeSettings(embedder_min_replicas=2, embedder_max_replicas=1)


# ---------------------------------------------------------------------------------------------
# the running app




def test_healthz_page_and_api_key(srv):
    r = srv.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["videos"] == serve_harness.N_VIDEOS
    page = srv.get("/")
    assert page.status_code == 200 and "AstraDup" in page.text and "/static/app.js" in page.text
    assert srv.get("/static/app.js").status_code == 200
    assert srv.get("/static/index.html").status_code == 404  # only the listed assets
    import requests

    for path in ("/videos", "/media/" + srv.ids["a.mp4"], "/reviews/queue"):
        r = requests.get(srv.url + path, timeout=30)
        assert r.status_code == 401 and "API key" in r.json()["error"], path
        r = requests.get(srv.url + path, headers={"X-API-Key": "wrong"}, timeout=30)
        assert r.status_code == 401, path
    # <video> and <img> cannot send headers: the page's cookie works too
    r = requests.get(srv.url + "/videos", cookies={"astradup_key": serve_harness.API_KEY}, timeout=30)
    assert r.status_code == 200


def test_stats_say_what_is_indexed_and_what_waits_for_an_index_build(srv):
    """``astradup stats`` over HTTP: an operator of a large library checks after a backfill or a
    Milvus restart that no rows wait for an index build before trusting search latencies."""
    import requests

    st = srv.get("/stats").json()
    assert st["shards"]["videos_ok"] >= serve_harness.N_VIDEOS - 1 and st["vectors"]["frames"] > 0
    for name, p in st["index"].items():
        assert set(p) >= {"rows", "indexed", "pending", "ready"} and p["ready"] <= p["rows"], name
    assert requests.get(srv.url + "/stats", timeout=30).status_code == 401


def test_videos_list_and_detail(srv):
    r = srv.get("/videos").json()
    assert r["total"] == serve_harness.N_VIDEOS
    assert sorted(v["name"] for v in r["videos"]) == sorted(srv.ids)
    assert srv.get("/videos?q=copy").json()["videos"][0]["name"] == "c_copy.mp4"
    page = srv.get("/videos?limit=2&offset=1").json()
    assert len(page["videos"]) == 2 and page["offset"] == 1 and page["next_offset"] == 3
    assert [v["name"] for v in page["videos"]] == sorted(srv.ids)[1:3]  # pages in name order
    assert srv.get(f"/videos?limit=2&offset={r['total'] - 1}").json()["next_offset"] is None
    assert srv.get("/videos?limit=1001").status_code == 422  # a page is bounded (picker paging)
    a = srv.get(f"/videos/{srv.ids['a.mp4']}").json()
    assert a["status"] == "ok" and a["has_audio"] and a["frames"] == 24 and a["meta"]["duration"] == pytest.approx(24)
    assert srv.get(f"/videos/{srv.ids['c.mp4']}").json()["has_audio"] is False


def test_upload_search_finds_the_source_and_both_intervals(srv):
    with open(srv.files["two.mp4"], "rb") as f:
        r = srv.post("/search", files={"file": ("two.mp4", f, "video/mp4")}, data={"top": "5"})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["query"]["kind"] == "upload" and res["query"]["name"] == "two.mp4"
    assert len(res["query"]["video_id"]) == 32 and res["query"]["duration"] == pytest.approx(21, abs=0.5)
    top = res["matches"][0]
    assert top["name"] == "a.mp4" and top["source_id"] == srv.ids["a.mp4"]
    assert top["label"] in ("duplicate", "near-duplicate") and 0 <= top["confidence"] <= 1
    assert set(top["scores"]) == {"visual", "audio", "metadata"}
    segs = sorted(top["segments"], key=lambda s: s["q_start"])
    assert len(segs) == 2, segs
    # query 0-8 s is source 12-20 s; query 13-21 s is source 0-8 s (5 s of other footage between)
    assert segs[0]["q_start"] < 4 and 10 <= segs[0]["s_start"] + 2 and segs[0]["s_start"] < 16, segs
    assert segs[1]["q_start"] > 8 and segs[1]["s_start"] < 4, segs
    assert all(m["label"] != "none" or m["segments"] or m["audio_copy"] for m in res["matches"])
    assert res["common"] == []  # a few videos: nothing recurs in common.min_videos of them


def test_a_fingerprint_upload_answers_as_the_video_upload(srv, tmp_path):
    """The one live fingerprint test: `astradup fingerprint` here, POST /search with the file as the
    'fingerprint' part there; the same sources, labels and copied intervals as the video upload
    (tests/cli/test_fingerprint.py compares scores and refusals without Ray)."""
    from astradup.cli import main as cli_main

    two = srv.files["two.mp4"]
    fp = tmp_path / "two.parquet"
    assert cli_main(["--data-dir", str(tmp_path / "data"), "fingerprint", str(two), "-o", str(fp)]) == 0
    with open(two, "rb") as f:
        by_video = srv.post("/search", files={"file": ("two.mp4", f, "video/mp4")}, data={"top": "5"}).json()
    r = srv.post("/search", files={"fingerprint": ("two.parquet", fp.read_bytes(), "application/octet-stream")},
                 data={"top": "5"})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["query"]["kind"] == "fingerprint" and res["query"]["video_id"] == by_video["query"]["video_id"]
    assert [(m["source_id"], m["label"], len(m["segments"])) for m in res["matches"]] == \
        [(m["source_id"], m["label"], len(m["segments"])) for m in by_video["matches"]]
    bad = srv.post("/search", files={"fingerprint": ("x.parquet", b"PAR1" + b"\x00" * 40, "application/octet-stream")})
    assert bad.status_code == 422 and "not a Parquet file" in bad.json()["error"]


def test_search_an_indexed_video_by_id_json_form_and_route(srv):
    c, c_copy = srv.ids["c.mp4"], srv.ids["c_copy.mp4"]
    by_json = srv.post("/search", json={"video_id": c, "top": 3})
    by_form = srv.post("/search", data={"video_id": c})
    by_route = srv.get(f"/videos/{c}/matches?top=3")
    for r in (by_json, by_form, by_route):
        assert r.status_code == 200, r.text
        res = r.json()
        assert res["query"]["kind"] == "video" and res["query"]["video_id"] == c
        assert res["matches"][0]["source_id"] == c_copy
        assert all(m["source_id"] != c for m in res["matches"])  # never itself
    assert srv.get(f"/videos/{'0' * 32}/matches").status_code == 404


def test_search_with_a_vpdq_hash_file(srv):
    """A vPDQ hash file (here a.mp4's stored PDQ hashes, as export-hashes writes them) as the query;
    hostile files are 4xx naming the reason."""
    from astradup.io.vpdq_file import format_vpdq
    from astradup.store.shards import ShardStore
    from astradup.vpdq_search import stored_hashes

    a = ShardStore(srv.cfg.resolved_shards_dir).load_features([srv.ids["a.mp4"]])[srv.ids["a.mp4"]]
    text = format_vpdq(stored_hashes(a))
    r = srv.post("/search", files={"hashes": ("a.txt", text.encode(), "text/plain")}, data={"top": "3"})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["query"]["kind"] == "hashes" and res["query"]["frames"] == len(a.pdq)
    top = res["matches"][0]
    assert (top["source_id"], top["name"], top["label"]) == (srv.ids["a.mp4"], "a.mp4", "duplicate")
    assert top["scores"] == {"vpdq_query": 1.0, "vpdq_source": 1.0}
    bad_hex = text.replace(text.split(",")[2], "zz" * 32, 1)
    for body, status, words in ((bad_hex, 422, "line 1"), ("1,2,3\n", 422, "3 comma-separated fields"),
                                ("", 400, "empty"), ("x" * ((8 << 20) + 1), 413, "limit")):
        r = srv.post("/search", files={"hashes": ("h.txt", body.encode(), "text/plain")})
        assert r.status_code == status and words in r.json()["error"], (status, r.text[:200])
    with open(srv.files["two.mp4"], "rb") as f:
        both = srv.post("/search", files={"file": ("two.mp4", f, "video/mp4"), "hashes": ("a.txt", text.encode())})
    assert both.status_code == 400 and "exactly one" in both.json()["error"]  # one query per request
    assert srv.post("/search", data={"hashes": text[:200]}).status_code == 400  # not a file part


def test_search_an_s3_uri(srv):
    r = srv.post("/search", json={"uri": srv.s3_query})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["query"]["kind"] == "uri" and res["query"]["name"] == "c_query.mp4"
    assert {m["name"] for m in res["matches"][:2]} == {"c.mp4", "c_copy.mp4"}
    # Not allowed and not there read alike (403, one text): no object's existence or size leaks.
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": srv.cfg.s3_endpoint}, skip_instance_cache=True)
    if not fs.exists("serve-private"):
        fs.mkdir("serve-private")
    fs.put(str(srv.files["c_query.mp4"]), "serve-private/c_query.mp4")
    missing = srv.post("/search", json={"uri": "s3://serve-queries/missing.mp4"})
    other = srv.post("/search", json={"uri": "s3://serve-private/c_query.mp4"})
    assert missing.status_code == other.status_code == 403, (missing.text, other.text)
    assert missing.json() == other.json()
    assert "not allowed" in other.json()["error"] and "c_query" not in other.text
    # An allowed object is sniffed like an upload: a DASH manifest never reaches a decoder.
    fs.pipe("serve-queries/manifest.mp4", b'<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011">'
                                         b"<BaseURL>file:///etc/passwd</BaseURL></MPD>")
    r = srv.post("/search", json={"uri": "s3://serve-queries/manifest.mp4"})
    assert r.status_code == 415 and "not a media file" in r.json()["error"], r.text
    assert srv.post("/search", json={"uri": "s3://serve-queries/x/../c_query.mp4"}).status_code == 400


def test_media_changed_since_indexing_is_not_served(srv, tmp_path):
    """A file replaced after indexing (by a symlink to another file, or by other bytes of the same
    size) is served neither as media nor as thumbnails; put back, it is served again."""
    vid, path = srv.ids["c_copy.mp4"], srv.files["c_copy.mp4"]
    data = path.read_bytes()
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * (len(data) // 32 + 1))
    aside = tmp_path / "aside.mp4"
    os.replace(path, aside)
    try:
        os.symlink(secret, path)
        for route in (f"/media/{vid}", f"/thumbs/{vid}?t=1"):
            r = srv.get(route)
            assert r.status_code == 404 and "changed since indexing" in r.json()["error"], route
            assert b"root:x" not in r.content
        os.unlink(path)
        path.write_bytes(b"\0" * 64 + data[64:])  # same size, other head bytes
        r = srv.get(f"/media/{vid}", headers={"Range": "bytes=100-199"})
        assert r.status_code == 404 and "changed since indexing" in r.json()["error"]
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.replace(aside, path)
    r = srv.get(f"/media/{vid}")
    assert r.status_code == 200 and r.content == data


def test_media_serves_byte_ranges(srv):
    vid = srv.ids["a.mp4"]
    data = srv.files["a.mp4"].read_bytes()
    full = srv.get(f"/media/{vid}")
    assert full.status_code == 200 and full.content == data
    assert full.headers["accept-ranges"] == "bytes" and full.headers["content-type"] == "video/mp4"
    r = srv.get(f"/media/{vid}", headers={"Range": "bytes=100-1099"})
    assert r.status_code == 206 and r.content == data[100:1100]
    assert r.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    r = srv.get(f"/media/{vid}", headers={"Range": "bytes=-500"})
    assert r.status_code == 206 and r.content == data[-500:]
    r = srv.get(f"/media/{vid}", headers={"Range": f"bytes={len(data) - 10}-"})
    assert r.status_code == 206 and r.content == data[-10:]
    r = srv.get(f"/media/{vid}", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"
    head = srv.session.head(f"{srv.url}/media/{vid}", timeout=30)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(data) and not head.content


def test_thumbnails_are_jpeg_and_cached(srv):
    vid = srv.ids["a.mp4"]
    r = srv.get(f"/thumbs/{vid}?t=5")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "JPEG" and img.size == (320, 240)
    cached = srv.cfg.data_dir + f"/thumbs/{vid}/50.jpg"
    assert open(cached, "rb").read() == r.content
    t0 = time.perf_counter()
    assert srv.get(f"/thumbs/{vid}?t=5.01").content == r.content  # same tenth of a second: the cached file
    assert time.perf_counter() - t0 < 2
    late = srv.get(f"/thumbs/{vid}?t=9999")  # past the end: clamped to the last frame
    assert late.status_code == 200 and late.content[:2] == b"\xff\xd8"
    assert srv.get(f"/thumbs/{'f' * 32}?t=1").status_code == 404


def test_review_queue_then_reject_hides_the_pair_both_ways(srv):
    e, e_dub = srv.ids["e.mp4"], srv.ids["e_dub.mp4"]
    queue = srv.get("/reviews/queue").json()
    pairs = {frozenset((it["query_id"], it["source_id"])) for it in queue["items"]}
    assert frozenset((e, e_dub)) in pairs, queue  # same picture, other sound: low confidence
    assert all(it["review"] for it in queue["items"])
    assert any(m["source_id"] == e_dub for m in srv.get(f"/videos/{e}/matches").json()["matches"])

    r = srv.post("/reviews", json={"query_id": e, "source_id": e_dub, "decision": "rejected", "note": "dub"})
    assert r.status_code == 200 and r.json()["decision"] == "rejected"
    assert all(m["source_id"] != e_dub for m in srv.get(f"/videos/{e}/matches").json()["matches"])
    assert all(m["source_id"] != e for m in srv.get(f"/videos/{e_dub}/matches").json()["matches"])
    assert frozenset((e, e_dub)) not in {frozenset((i["query_id"], i["source_id"]))
                                         for i in srv.get("/reviews/queue").json()["items"]}
    listed = srv.get("/reviews?decision=rejected").json()["reviews"]
    assert [(x["query_id"], x["source_id"], x["note"]) for x in listed] == [(e, e_dub, "dub")]
    # remembered on disk, in the data dir
    from serve.search_service import reviews_path

    assert ReviewStore(reviews_path(srv.cfg)).get(e_dub, e).decision == REJECTED


def test_confirmed_match_is_still_reported_with_its_verdict(srv):
    c, c_copy = srv.ids["c.mp4"], srv.ids["c_copy.mp4"]
    assert srv.post("/reviews", json={"query_id": c, "source_id": c_copy, "decision": "confirmed"}).status_code == 200
    m = srv.get(f"/videos/{c_copy}/matches").json()["matches"][0]
    assert m["source_id"] == c and m["decision"] == "confirmed"


def test_delete_removes_the_vectors_and_nothing_else(srv):
    d = srv.ids["d.mp4"]
    r = srv.delete(f"/videos/{d}")
    assert r.status_code == 200 and r.json()["vectors_removed"] > 0
    assert srv.get(f"/videos/{d}").json()["status"] == "deleted"
    assert srv.get(f"/media/{d}").status_code == 404
    assert srv.get(f"/thumbs/{d}").status_code == 404
    again = srv.delete(f"/videos/{d}")
    assert again.status_code == 409 and "already deleted" in again.json()["error"]
    assert srv.get("/videos").json()["total"] == serve_harness.N_VIDEOS - 1
    assert srv.files["d.mp4"].exists()  # the file itself is never touched
    res = srv.get(f"/videos/{srv.ids['c.mp4']}/matches").json()
    assert res["matches"][0]["source_id"] == srv.ids["c_copy.mp4"]
    assert srv.get("/healthz").json()["videos"] == serve_harness.N_VIDEOS - 1


def test_metrics_reach_ray_metrics_export(srv):
    """The counters and the latency histogram go through Ray's metrics (what the dashboard and
    Prometheus read), not only into /healthz."""
    import ray
    import requests

    counts = srv.get("/healthz").json()
    assert counts["searches_ok"] > 0 and counts["searches_rejected"] >= 0 and counts["errors_4xx"] > 0
    port = next(n["MetricsExportPort"] for n in ray.nodes() if n["Alive"])
    want = ("ray_astradup_searches_total", "ray_astradup_search_latency_s_count", "ray_astradup_http_errors_total",
            "ray_astradup_search_inflight{", "ray_astradup_query_stage_latency_s_count{")  # search replica's
    # The search replica times its query stages: the upload's embedding, Searcher.search's KNN.
    want_stages = {"embed", "knn", "score", "search"}
    # Each process reports its metrics every few seconds on its own clock, so one stage's series can
    # reach the export a report later than another's: wait for all of them, not the first.
    deadline = time.monotonic() + 60
    while True:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        missing = [w for w in want if w not in text]
        stages = set(re.findall(r'^ray_astradup_query_stage_latency_s_count\{[^}]*stage="(\w+)"', text, re.M))
        if (not missing and want_stages <= stages) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert not missing, missing
    assert 'outcome="ok"' in text and 'kind="upload"' in text
    assert want_stages <= stages, stages
