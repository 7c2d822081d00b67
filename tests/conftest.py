"""Shared fixtures: a local S3 (moto's server on 127.0.0.1) for the tests that read or write s3://."""
from __future__ import annotations

import functools
import os
import re
import socket
import sys
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Dummy AWS credentials before anything starts Ray: Ray's workers inherit the environment of
    the process that started Ray, so setting them later in a fixture would not reach them.
    Profiles and session tokens are dropped so no test can pick up a developer's real account."""
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        os.environ.pop(name, None)


# Modules that start Ray, Ray Serve, a Milvus server, a browser, moto or pip, or index and search
# real videos through the pipeline (each takes 10 s to minutes). `pytest -m "not slow"` leaves them
# out and runs the unit tests (pure cores, parsers, hostile inputs, config) in about a minute;
# `make test` and CI run everything. A new module that does any of those belongs here.
SLOW_MODULES = frozenset({
    "test_audio_copy_e2e", "test_backfill", "test_bad_media", "test_common_e2e", "test_concurrency",
    "test_demo_corpus", "test_dedup", "test_embedder", "test_end_to_end", "test_fingerprint",
    "test_milvus_outage", "test_milvus_server", "test_notify", "test_raystart", "test_report", "test_s3",
    "test_serve", "test_serve_browser", "test_serve_deploy", "test_serve_fuzz", "test_telemetry",
    "test_verdicts", "test_wheel", "test_write_paths",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks the slow modules."""
    for item in items:
        if item.module is not None and item.module.__name__.rpartition(".")[2] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


# `make test` runs two pytest-xdist workers. Each module runs whole on one worker (its module
# fixtures start a Ray cluster, a corpus, a Milvus server once), and so does each of two groups of
# modules: the ones that share tests/serve_harness.py's running app (started by the first, stopped
# after the last: split over two workers, each started its own and a worker could start it twice),
# and the ones that start a Milvus 2.3 server (its coordinator ports are fixed, so two at once kill
# one; tests/milvus_harness.py also makes them take turns). Not ``--dist loadgroup``: xdist 3.8
# names a group by rewriting ``item._nodeid``, which pytest 9 no longer reads, so no group held.
@functools.lru_cache(maxsize=None)
def groups() -> dict[str, re.Pattern[str]]:
    """Group name: the module-level import that puts a test module in it (read when scheduling, so
    the harnesses are imported by xdist's controller only)."""
    from tests.milvus_harness import milvus_server
    from tests.serve_harness import FIXTURE

    return {"served_app": re.compile(rf"^from tests\.serve_harness import .*\b{FIXTURE}\b", re.M),
            "milvus_server": re.compile(rf"^from tests\.milvus_harness import .*\b{milvus_server.__name__}\b", re.M)}


def module_scope(nodeid: str, root: Path) -> str:
    """The unit ``make test`` hands a worker whole: the test's module, or the group it belongs to."""
    return _scope_of(nodeid.split("::", 1)[0], root)


@functools.lru_cache(maxsize=None)
def _scope_of(path: str, root: Path) -> str:
    try:
        text = (root / path).read_text(errors="replace")
    except OSError:
        return path
    return next((group for group, pattern in groups().items() if pattern.search(text)), path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """With ``--dist loadfile``, xdist's file scheduling over ``module_scope``'s units instead of
    files; any other ``--dist`` is xdist's own."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    root = Path(str(config.rootpath))

    class ModuleGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return module_scope(nodeid, root)

    return ModuleGroups(config, log)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """http://127.0.0.1:<port> of a moto S3 server that lives for the whole session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture()
def s3_bucket(s3_endpoint: str, request: pytest.FixtureRequest):
    """(s3fs filesystem, bucket name): a fresh bucket per test, named after the test."""
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    name = "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:50].strip("-")
    fs.mkdir(name)
    return fs, name


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop what the tests left running in this process (a local Ray, cached ONNX sessions, open
    Milvus Lite stores) while the interpreter is whole: native libraries torn down by the
    interpreter's own exit, in whatever order it picks, crashed it once after a green run."""
    import gc

    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    if "astradup.features.embedder" in sys.modules:
        sys.modules["astradup.features.embedder"].clear_embedder_cache()
    gc.collect()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """pytest's faulthandler stops at unconfigure; a crash at interpreter exit should still say
    where it happened in the CI log."""
    import faulthandler

    faulthandler.enable(file=sys.__stderr__, all_threads=True)


HEAD_DRIVER = """
import sys, time
import ray
from astradup import raystart

raystart._token_auth_on()
raystart.ensure_token()
raystart.refresh_auth_state()
with raystart._bound_to_loopback():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
print("GCS", ray.get_runtime_context().gcs_address, flush=True)
while True:
    time.sleep(60)
"""


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The address (127.0.0.1:<port>) of one local Ray, token auth on, shared by the tests whose job
    drivers run in processes of their own: they join it through $RAY_ADDRESS, as `ray job submit`
    drivers join a cluster, instead of each starting a local Ray. Starting several local Rays at
    once on a busy 2-core machine took minutes (the GCS missed its start-up deadline); one started
    once does not. A driver process of its own holds it (started as the product starts a local Ray:
    loopback, token), not `ray start`, whose address file would make every later ray.init() in this
    session join it; four logical CPUs, so two jobs' actor pools cannot starve each other's tasks.
    Reaped by process group at the end."""
    import signal
    import subprocess
    import time
    root = Path(__file__).resolve().parents[1]
    log = tmp_path_factory.mktemp("ray_head") / "head.log"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(root)
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", HEAD_DRIVER], cwd=root, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 600
        while True:
            lines = [ln for ln in log.read_text().splitlines() if ln.startswith("GCS ")]
            if lines:
                break
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the shared Ray did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield lines[0].split()[1]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
