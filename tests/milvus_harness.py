"""One Milvus 2.3 standalone server on 127.0.0.1 for a test module, shared by every module that needs one.

The server comes from the ``milvus`` PyPI package (embedded etcd and local storage, no Docker).
``MilvusHarness`` starts it on a base dir, waits for /healthz, and can stop it and start it
again on the same base dir and the same ports: an outage test needs the restarted server to be
the one the client already points at, with the collections it had.

Skips only when the server binary cannot run on this platform; a server that starts but
misbehaves fails the test.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import random
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

START_TIMEOUT = 240.0  # seconds; a cold start on a busy 2-core box has taken over 60 s
_CANNOT_RUN = ("exec format error", "glibc_", "cannot execute", "no such file or directory",
               "error while loading shared libraries")


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports below the kernel's ephemeral range (32768+), so an outgoing
    connection cannot take one between this pick and the server binding it."""
    rng = random.Random()
    held: list[socket.socket] = []
    try:
        while len(held) < n:
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", rng.randrange(20000, 32000)))
            except OSError:
                s.close()
                continue
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return b"OK" in r.read()
    except OSError:
        return False


class MilvusHarness:
    """A Milvus server process on ``base`` that a test can start, stop and restart.

    The first start lets the ``milvus`` package pick free ports (several test workers may share
    a machine); a restart reuses exactly those ports, since the client under test keeps its URI.
    """

    def __init__(self, base: Path, settings: dict[str, object] | None = None) -> None:
        if not (sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")) and sys.platform != "darwin":
            pytest.skip(f"the milvus package ships no server binary for {sys.platform}/{platform.machine()}")
        from milvus import MilvusServer  # a test dependency (pyproject [test]); missing = a broken install

        self.base = Path(base)
        self.server = MilvusServer(wait_for_started=False)
        self.server.set_base_dir(str(self.base))
        # Server settings by their dotted milvus.yaml key (say ``dataCoord.segment.maxSize``): the
        # package writes them into the config file it generates on each start.
        for key, value in (settings or {}).items():
            self.server.config.set(key, value)
        self._started_once = False
        # The embedded etcd listens on 2379 (client) and 2380 (peer) unless told otherwise, and the
        # package only moves the client port: a second server on the machine (another test worker, a
        # benchmark) would die on 2380. Both ports are picked free here and given to etcd in its own
        # config file, which Milvus reads from ETCD_CONFIG_PATH (an env override of etcd.config.path).
        client, peer = _free_ports(2)
        self.server.config.configs["etcd_port"] = client
        self._etcd_config = self.base / "configs" / "etcd.yaml"
        self._etcd_config.parent.mkdir(parents=True, exist_ok=True)
        self._etcd_config.write_text(
            "name: astradup-test\n"
            f"data-dir: {self.base / 'data' / 'etcd.data'}\n"
            f"listen-client-urls: http://127.0.0.1:{client}\n"
            f"advertise-client-urls: http://127.0.0.1:{client}\n"
            f"listen-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-cluster: astradup-test=http://127.0.0.1:{peer}\n")

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server.listen_port}"

    @property
    def running(self) -> bool:
        return self.server.running and self.server.server_proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> str:
        """Start the server (same ports as before on a restart) and wait until healthy; returns the URI."""
        if self._started_once:
            # The package re-resolves ports on every start and moves to the next free one when a
            # port is still held (TIME_WAIT after a kill); the config written on the first start
            # already names the ports, so a restart runs the binary on that config unchanged.
            config = self.server.config
            resolve = config.resolve
            config.resolve = lambda: None  # type: ignore[method-assign]
            try:
                self._launch()
            finally:
                config.resolve = resolve  # type: ignore[method-assign]
        else:
            self._launch()
            self._started_once = True
        self._wait_healthy(timeout)
        return self.uri

    def _launch(self) -> None:
        # MilvusServer.start copies os.environ for the child; the variable is set only around it.
        old = os.environ.get("ETCD_CONFIG_PATH")
        os.environ["ETCD_CONFIG_PATH"] = str(self._etcd_config)
        try:
            self.server.start()
        except OSError as e:  # the binary could not even be executed here
            pytest.skip(f"Milvus server binary cannot run on this platform: {e}")
        finally:
            if old is None:
                os.environ.pop("ETCD_CONFIG_PATH", None)
            else:
                os.environ["ETCD_CONFIG_PATH"] = old

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while not _healthy(self.server.webservice_port):
            code = self.server.server_proc.poll()
            if code is not None:
                log = (self.base / "logs" / "milvus-stderr.log").read_text(errors="replace")[-2000:]
                if any(s in log.lower() for s in _CANNOT_RUN):
                    pytest.skip(f"Milvus server binary cannot run on this platform (exit {code}): {log}")
                pytest.fail(f"Milvus server exited with {code} before becoming healthy:\n{log}")
            if time.time() > deadline:
                pytest.fail(f"Milvus server not healthy after {timeout:.0f} s (logs in {self.base}/logs)")
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a second): what an outage looks like to a client."""
        self.server.stop()


# Held by the process whose module has a server up: Milvus 2.3 standalone binds fixed coordinator
# ports (rootCoord 53100, dataCoord 13333, ...) that the package does not move, so two servers on one
# machine kill one another (-6, "bind: address already in use"); `make test`'s two pytest-xdist
# workers each run whole modules, and a worker whose module needs a server waits here for the other's.
LOCK_FILE = Path(tempfile.gettempdir()) / "astradup-tests-milvus-server.lock"


@contextlib.contextmanager
def one_server_at_a_time():
    """The machine-wide turn to run a Milvus server (an flock, released if the holder dies)."""
    with open(LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def milvus_server(tmp_path_factory: pytest.TempPathFactory, name: str = "milvus_server"):
    """Generator body for a module-scoped fixture: yields a started MilvusHarness, stops it after;
    the server (restarts included) runs while this process holds ``one_server_at_a_time``."""
    harness = MilvusHarness(tmp_path_factory.mktemp(name))
    with one_server_at_a_time():
        try:
            harness.start()
            yield harness
        finally:
            harness.stop()
