"""Shared fixtures: a local S3 (moto's server on 127.0.0.1) for the tests that read or write s3://."""
from __future__ import annotations

import os
import socket

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Dummy AWS credentials before anything starts Ray: Ray's workers inherit the environment of
    the process that started Ray, so setting them later in a fixture would not reach them.
    Profiles and session tokens are dropped so no test can pick up a developer's real account."""
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        os.environ.pop(name, None)


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
    import sys

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
    import sys

    faulthandler.enable(file=sys.__stderr__, all_threads=True)
