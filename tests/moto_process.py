"""A moto S3 server in its own process on 127.0.0.1, for benchmarks that time S3 reads.

In the measuring process (``ThreadedMotoServer``) moto shares the GIL with the very reads it
serves, so every figure would include the server's CPU in the client's time; the tests keep the
in-process server (tests/conftest.py) because they time nothing.
"""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator


@contextlib.contextmanager
def moto_server(start_timeout: float = 30.0) -> Iterator[str]:
    """Yield the endpoint URL of a fresh moto server; it is stopped on exit."""
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        port = so.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        while True:
            with socket.socket() as so:
                if so.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.time() - t0 > start_timeout:
                raise RuntimeError(f"moto server did not start on 127.0.0.1:{port} (exit {proc.poll()})")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
