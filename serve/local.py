"""Start and stop the application on this machine (``astradup serve``, tests, the load benchmark)."""
from __future__ import annotations

import os
import socket
import time
from typing import Callable

import requests
from ray.serve import Application

from astradup.config import Config
from astradup.errors import ConfigError
from astradup.io.remote import absolute_paths
from astradup.raystart import ensure_ray
from astradup.uris import is_lite_uri
from serve.app import APP_NAME, build, build_app, resolve
from serve.hosts import BindRefused, check_bind
from serve.settings import AppArgs, ServeSettings

READY_TIMEOUT_S = 300


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_lite_free(cfg: Config) -> None:
    """Fail fast, with the reason, when another process holds the Milvus Lite database.

    Milvus Lite takes an advisory flock on ``<file>.db/LOCK`` while a process has it open; taking
    and dropping the same lock here (on a descriptor of our own) tells whether the search
    replica could open it, without disturbing the holder.
    """
    import fcntl

    uri = absolute_paths(cfg).resolved_milvus_uri
    lock = os.path.join(uri, "LOCK")
    if not is_lite_uri(uri) or not os.path.exists(lock):
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        raise ConfigError(f"another process holds the Milvus Lite database {uri}: stop it first (a Lite "
                          "database belongs to one process; the search deployment must be that process), "
                          "or use a Milvus server URI") from None
    finally:
        os.close(fd)


def start(cfg: Config, settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000,
          timeout: float = READY_TIMEOUT_S, insecure: bool = False) -> str:
    """Run the app of a loaded config and settings on Serve at host:port (tests, the load
    benchmark); returns its base URL once /healthz answers.

    A non-loopback ``host`` without an API key is refused (ConfigError) unless ``insecure``; the
    gateway is told the bind so that it answers only Host headers naming it (serve/hosts.py).
    """
    try:
        check_bind(host, settings.api_key, insecure)
    except BindRefused as e:
        raise ConfigError(str(e)) from None
    settings = settings.replace(bind_host=host)
    return _launch(cfg, lambda: build_app(cfg, settings), host, port, settings.api_key, timeout)


def start_args(args: AppArgs, host: str = "127.0.0.1", port: int = 8000,
               timeout: float = READY_TIMEOUT_S) -> str:
    """``astradup serve``: the app the builder makes of ``args`` (the ASTRADUP_* service variables
    under them), at host:port; the bind is the gateway's ``bind_host``. Returns the base URL."""
    try:
        args = resolve(args).replace(bind_host=host)
        check_bind(args.bind_host, args.api_key, args.insecure)
    except BindRefused as e:
        raise ConfigError(str(e)) from None
    return _launch(args.load_config(), lambda: build(args), host, port, args.api_key, timeout)


def _launch(cfg: Config, make_app: Callable[[], Application], host: str, port: int, api_key: str,
            timeout: float) -> str:
    """Ray first, then the application (``make_app``): the builder places the embedder by the
    resources of the cluster it will run on (serve/app.py ``cluster_resources``)."""
    from ray import serve

    check_lite_free(cfg)
    ensure_ray(cfg.pipeline.dashboard, cfg.pipeline.metrics_export_port, cfg.pipeline.ray_host)
    app = make_app()
    serve.start(http_options={"host": host, "port": port})
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    url = f"http://{host}:{port}"
    wait_ready(url, api_key, timeout)
    return url


def wait_ready(url: str, api_key: str = "", timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            r = requests.get(f"{url}/healthz", headers={"X-API-Key": api_key} if api_key else {}, timeout=15)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except requests.RequestException as e:
            last = type(e).__name__
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s (last answer: {last})")


def stop() -> None:
    from ray import serve

    serve.shutdown()
