"""Join or start Ray, one way for the indexing job, the CLI and the search app.

A local Ray start waits a fixed 30 s for its raylet to register with the GCS; on a small machine
that is already busy (two backfills starting at once beside a Milvus server, a CI box) that wait
can run out although nothing is wrong. A job that dies of it loses nothing, but it has done no
work either, so a start that times out is retried a few times: the processes the failed attempt
left behind are stopped first, so that the next attempt does not compete with them.

Security: Ray's token authentication stays on (``RAY_AUTH_MODE=token``, Ray's own default). A local
Ray gets its token where Ray looks for one: ``$RAY_AUTH_TOKEN``, else the file ``$RAY_AUTH_TOKEN_PATH``,
else ``~/.ray/auth_token``; when there is none, a fresh random one is written to that file (mode 0600).
A local Ray listens on 127.0.0.1 only (GCS, raylet, agents, metrics, dashboard) unless
``pipeline.ray_host`` says otherwise; a cluster's nodes and clients share one token (cluster.yaml).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import stat
import time
from pathlib import Path
from typing import Callable, Iterator

from astradup.logs import get_logger

log = get_logger(__name__)

START_ATTEMPTS = 3
# Ray's own default is 30 s; the GCS port file is written late on a loaded machine.
GCS_PORT_WAIT_S = "120"
_STARTUP_TIMEOUT_SIGNS = ("timed out during startup", "timed out waiting for file",
                          "node registration may not be complete")


def is_startup_timeout(exc: BaseException) -> bool:
    """Whether ``ray.init`` failed because the local node was slow to come up (worth a retry),
    as opposed to a wrong argument or an unreachable cluster (not worth one)."""
    text = str(exc).lower()
    return any(sign in text for sign in _STARTUP_TIMEOUT_SIGNS)


def _children(pid: int) -> set[int]:
    """Direct child processes of ``pid`` (Linux /proc; empty elsewhere)."""
    out: set[int] = set()
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its closing bracket.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            out.add(int(name))
    return out


def _stop(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def start_with_retry(init: Callable[[], None], shutdown: Callable[[], None],
                     attempts: int = START_ATTEMPTS, backoff_s: float = 2.0,
                     children: Callable[[], set[int]] = lambda: _children(os.getpid()),
                     stop: Callable[[set[int]], None] = _stop) -> None:
    """Call ``init`` until it succeeds; a startup timeout is retried (``attempts`` in all), any
    other error is raised at once. Before a retry, the processes the failed attempt started are
    stopped and ``shutdown`` clears the driver's half-made state."""
    for attempt in range(1, attempts + 1):
        before = children()
        try:
            init()
            return
        except Exception as exc:  # noqa: BLE001 - Ray raises bare Exception for this one
            if attempt == attempts or not is_startup_timeout(exc):
                raise
            log.warning("local Ray did not come up (attempt %d of %d: %s); retrying",
                        attempt, attempts, str(exc).splitlines()[0][:200])
            stop(children() - before)
            try:
                shutdown()
            except Exception:  # noqa: BLE001 - nothing to shut down is fine
                pass
            time.sleep(backoff_s * attempt)


LOOPBACK = "127.0.0.1"
_ALL_INTERFACES = ("0.0.0.0", "::")
AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
# Ray's own switch for a single-machine Ray (its default on macOS/Windows): the node's address is the
# loopback one, so the GCS, raylets, agents and workers bind 127.0.0.1 instead of every interface.
_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def default_token_path() -> Path:
    """Where Ray looks for its token when neither $RAY_AUTH_TOKEN nor $RAY_AUTH_TOKEN_PATH is set."""
    return Path.home() / ".ray" / "auth_token"


def ensure_token() -> Path | None:
    """Make sure the token a local Ray will use exists where Ray looks for it; returns that file
    (None when the token comes from $RAY_AUTH_TOKEN). A missing file is created with a fresh random
    token, readable by its owner only (0600, its folder 0700); an existing one is kept, and its
    permissions narrowed to 0600 when others could read it."""
    if os.environ.get(TOKEN_ENV, "").strip():
        return None
    custom = os.environ.get(TOKEN_PATH_ENV, "").strip()
    path = Path(custom).expanduser() if custom else default_token_path()
    try:
        if path.read_text().strip():
            _narrow_permissions(path)
            return path
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Written to a private temporary file, then linked into place: another process starting at the
    # same time either wins (its token is used) or loses; nobody ever reads a half-written file.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))  # 256 bits, Ray's own format
        try:
            if path.exists() and not path.read_text().strip():
                path.unlink()  # an empty file is no token (Ray refuses it); replace it
            os.link(tmp, path)
            log.info("generated a Ray authentication token in %s (mode 0600)", path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _narrow_permissions(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(0o600)
            log.warning("Ray token file %s was readable by others (mode %o); now 0600", path, mode)
    except OSError as e:  # not ours to change: say so, Ray still works
        log.warning("cannot narrow the permissions of the Ray token file %s: %s", path, e)


def refresh_auth_state() -> None:
    """Ray caches its config and the token per process: re-read both after the env/token changed."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):  # a Ray without token auth: nothing cached
        pass


def _token_auth_on() -> None:
    mode = os.environ.setdefault(AUTH_MODE_ENV, "token")
    if mode.lower() != "token":
        log.warning("%s=%s: Ray token authentication is OFF; anyone who can reach this Ray's ports "
                    "can run code in it. Unset it to turn authentication back on.", AUTH_MODE_ENV, mode)


def _address_host(address: str) -> str:
    """The host of a Ray address: "127.0.0.1:6379", "ray://10.0.0.1:10001", "[::1]:6379", "auto"."""
    rest = address.strip().split("://", 1)[-1]
    if rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    return rest.rsplit(":", 1)[0] if ":" in rest else rest


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


@contextlib.contextmanager
def _bound_to_loopback() -> Iterator[None]:
    """While a local Ray starts: its node address is 127.0.0.1, so everything it starts binds the
    loopback interface only. The processes it starts keep the setting (they inherit it); this
    process gets its own back afterwards, so that a later ray.init(address=...) to a real cluster
    still finds this machine's address."""
    from ray._private import ray_constants

    old_env = os.environ.get(_LOCAL_ONLY_ENV)
    old_const = getattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    os.environ[_LOCAL_ONLY_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old_const
        if old_env is None:
            os.environ.pop(_LOCAL_ONLY_ENV, None)
        else:
            os.environ[_LOCAL_ONLY_ENV] = old_env


def ensure_ray(dashboard: bool = True, metrics_export_port: int = 0, host: str = LOOPBACK) -> None:
    """Join $RAY_ADDRESS when set (a `ray job submit` or a cluster), else start a local Ray.

    Token authentication is on either way (RAY_AUTH_MODE=token unless set explicitly, so this
    driver and the processes it starts agree; joining needs the cluster's token, see cluster.yaml).
    A local Ray gets a token (``ensure_token``) and listens on ``host``: 127.0.0.1 (the default) =
    this machine only; 0.0.0.0 = every interface (other machines can reach it; they still need the
    token); another address = that one is advertised (Ray's gRPC servers then bind every interface).
    ``metrics_export_port`` fixes a local Ray's Prometheus endpoint (0 = Ray's choice), so a scraper
    knows where to look."""
    import ray

    _token_auth_on()
    if ray.is_initialized():
        return
    kwargs = dict(ignore_reinit_error=True, log_to_driver=False)
    addr = os.environ.get("RAY_ADDRESS")
    if addr:
        refresh_auth_state()
        # A Ray on this machine's loopback (one started by ensure_ray): this driver must take the
        # loopback address as its own too, or it looks for the GCS at the machine's outside address.
        with _bound_to_loopback() if is_loopback(_address_host(addr)) else contextlib.nullcontext():
            ray.init(address=addr, **kwargs)
        return
    if os.environ[AUTH_MODE_ENV].lower() == "token":
        ensure_token()
    refresh_auth_state()
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", GCS_PORT_WAIT_S)
    host = (host or LOOPBACK).strip()
    extra: dict = {"_metrics_export_port": metrics_export_port} if metrics_export_port else {}
    if is_loopback(host):
        extra["dashboard_host"] = LOOPBACK
        bind = _bound_to_loopback()
    else:
        extra["dashboard_host"] = host
        if host not in _ALL_INTERFACES:
            extra["_node_ip_address"] = host
        log.warning("local Ray listening beyond loopback (pipeline.ray_host=%s); token auth is %s",
                    host, os.environ[AUTH_MODE_ENV])
        bind = contextlib.nullcontext()
    with bind:
        start_with_retry(lambda: ray.init(include_dashboard=dashboard, **extra, **kwargs), ray.shutdown)
