"""One running AstraDup Serve app over one small generated corpus, shared by the serve test modules
(test_serve, test_serve_browser, test_serve_fuzz): starting Serve and indexing cost ~1 min on two
cores, too much to pay three times.

The corpus: a.mp4 (24 s, music) is the source of the two-interval upload ``two.mp4`` (a.mp4
12-20 s, 5 s of other footage, a.mp4 0-8 s); c_copy.mp4 re-encodes c.mp4 (no audio); e_dub.mp4 is
e.mp4's picture with another soundtrack (sight and sound disagree: a low-confidence match for the
review queue), and g_dub.mp4 is the same to g.mp4 (a second such pair, for the browser test);
d.mp4 is unrelated (deleted by a test). The app runs with an API key and a 4 MB
upload limit, against the session's local S3 (tests/conftest.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from astradup.config import Config, load_config
from serve.settings import ServeSettings
from tests.media import make_copy, make_video, run_ffmpeg

API_KEY = "serve-test-key-0123"
MAX_UPLOAD = 4 << 20
N_VIDEOS = 8
FIXTURE = "srv"  # the name test modules give the fixture that calls ``served``


@dataclass
class Served:
    url: str
    cfg: Config
    settings: ServeSettings
    root: Path
    ids: dict[str, str]  # file name -> video id
    files: dict[str, Path]  # file name -> local path (library and queries)
    s3_query: str  # s3:// URI of a re-encoded copy of c.mp4
    session: requests.Session = field(default_factory=requests.Session)

    def get(self, path: str, **kw) -> requests.Response:
        return self.session.get(self.url + path, timeout=120, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.session.post(self.url + path, timeout=120, **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        return self.session.delete(self.url + path, timeout=120, **kw)


_served: Served | None = None


def build_corpus(root: Path) -> tuple[Path, dict[str, Path]]:
    lib, queries = root / "library", root / "queries"
    lib.mkdir(parents=True)
    queries.mkdir()
    files: dict[str, Path] = {}
    a = files["a.mp4"] = make_video(lib / "a.mp4", seconds=24, size=(320, 240), source="mandelbrot",
                                    audio="music", seed=1)
    c = files["c.mp4"] = make_video(lib / "c.mp4", seconds=10, size=(320, 240), source="cellauto", audio=None,
                                    seed=3)
    files["c_copy.mp4"] = make_copy(c, lib / "c_copy.mp4", vf="scale=240:180", crf=30)
    e = files["e.mp4"] = make_video(lib / "e.mp4", seconds=12, size=(320, 240), source="life", audio="music",
                                    seed=5)
    other = make_video(root / "other.mp4", seconds=12, size=(160, 120), source="testsrc2", audio="music", seed=6)
    files["e_dub.mp4"] = lib / "e_dub.mp4"
    run_ffmpeg("-i", str(e), "-i", str(other), "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset",
               "ultrafast", "-crf", "28", "-c:a", "aac", str(lib / "e_dub.mp4"))
    g = files["g.mp4"] = make_video(lib / "g.mp4", seconds=10, size=(320, 240), source="boxes", audio="music",
                                    seed=11)
    other2 = make_video(root / "other2.mp4", seconds=10, size=(160, 120), source="smptebars", audio="music", seed=12)
    files["g_dub.mp4"] = lib / "g_dub.mp4"
    run_ffmpeg("-i", str(g), "-i", str(other2), "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset",
               "ultrafast", "-crf", "28", "-c:a", "aac", str(lib / "g_dub.mp4"))
    files["d.mp4"] = make_video(lib / "d.mp4", seconds=8, size=(320, 240), source="gradients", audio="sine", seed=4)
    filler = make_video(root / "filler.mp4", seconds=5, size=(320, 240), source="boxes", audio="noise", seed=8)
    two = files["two.mp4"] = queries / "two.mp4"
    run_ffmpeg(
        "-i", str(a), "-i", str(filler), "-filter_complex",
        "[0:v]trim=12:20,setpts=PTS-STARTPTS[v1];[0:a]atrim=12:20,asetpts=PTS-STARTPTS,aresample=44100[a1];"
        "[1:v]setpts=PTS-STARTPTS[v2];[1:a]asetpts=PTS-STARTPTS,aresample=44100,aformat=channel_layouts=mono[a2];"
        "[0:v]trim=0:8,setpts=PTS-STARTPTS[v3];[0:a]atrim=0:8,asetpts=PTS-STARTPTS,aresample=44100[a3];"
        "[v1][a1][v2][a2][v3][a3]concat=n=3:v=1:a=1[v][a]", "-map", "[v]", "-map", "[a]",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "26", "-c:a", "aac", str(two))
    files["c_query.mp4"] = make_copy(c, queries / "c_query.mp4", crf=34)
    return lib, files


def _start(tmp_path_factory, s3_endpoint: str) -> Served:
    import s3fs

    from astradup.catalog import Catalog
    from astradup.pipeline import index
    from serve import local

    t0 = time.monotonic()
    root = tmp_path_factory.mktemp("serve")
    lib, files = build_corpus(root)
    t_corpus = time.monotonic()
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    fs.mkdir("serve-queries")
    fs.put(str(files["c_query.mp4"]), "serve-queries/c_query.mp4")
    # The corpus is local, so the default uri allow-list (the indexed buckets) is empty: queries may
    # come from the query bucket only.
    cfg = load_config(overrides={"data_dir": str(root / "data"), "s3_endpoint": s3_endpoint,
                                 "pipeline": {"dashboard": False, "decode_concurrency": 1},
                                 "search": {"allowed_uris": ["s3://serve-queries"]}})
    catalog = Catalog(cfg)
    report = index([str(lib)], cfg, catalog=catalog)
    assert report.indexed == N_VIDEOS and not report.failed, report.summary()
    catalog.vectors.close()  # the search replica must be the one process holding the Lite file
    from astradup.dedup.job import run_job

    run_job(cfg)  # the review queue reads the dedup job's pairs (its one worker opens the Lite file)
    t_index = time.monotonic()
    ids = {Path(row["uri"]).name: vid for vid, row in catalog.shards.latest_status().items()}
    settings = ServeSettings(api_key=API_KEY, max_upload_bytes=MAX_UPLOAD, embedder_max_replicas=1,
                             search_num_cpus=0.5, embedder_num_cpus=0.5, gateway_num_cpus=0.0)
    url = local.start(cfg, settings, host="127.0.0.1", port=local.free_port())
    print(f"\n[serve harness] corpus {t_corpus - t0:.1f} s, index {t_index - t_corpus:.1f} s, "
          f"serve start {time.monotonic() - t_index:.1f} s")
    srv = Served(url, cfg, settings, root, ids, files, "s3://serve-queries/c_query.mp4")
    srv.session.headers["X-API-Key"] = API_KEY
    return srv


def stop() -> None:
    global _served
    if _served is not None:
        from serve import local

        _served = None
        local.stop()


def served(request: pytest.FixtureRequest, tmp_path_factory) -> Served:
    """The shared app; stopped after the last test module that uses it (or at session end)."""
    global _served
    if _served is None:
        _served = _start(tmp_path_factory, request.getfixturevalue("s3_endpoint"))
        request.config.add_cleanup(stop)
    return _served


def last_module(request: pytest.FixtureRequest) -> bool:
    """Whether no test after this module needs the app (so a module fixture may stop it)."""
    users = [it for it in request.session.items if FIXTURE in getattr(it, "fixturenames", ())]
    return bool(users) and users[-1].module is request.module


@pytest.fixture(scope="module")
def srv(request, tmp_path_factory):
    """The one running app, shared by the serve test modules; the last of them stops it."""
    s = served(request, tmp_path_factory)
    yield s
    if last_module(request):
        stop()


def multipart_search_request(body: bytes):
    """A starlette Request for ``POST /search`` whose multipart body (boundary ``B``) arrives in
    one message: for calling the gateway's handler directly, without Ray or a server."""
    from starlette.requests import Request

    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({"type": "http", "method": "POST", "path": "/search", "query_string": b"",
                    "headers": [(b"content-type", b"multipart/form-data; boundary=B")]}, receive)
