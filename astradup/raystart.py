"""Join or start Ray, one way for the indexing job, the CLI and the search app.

A local Ray start waits a fixed 30 s for its raylet to register with the GCS; on a small machine
that is already busy (two backfills starting at once beside a Milvus server, a CI box) that wait
can run out although nothing is wrong. A job that dies of it loses nothing, but it has done no
work either, so a start that times out is retried a few times: the processes the failed attempt
left behind are stopped first, so that the next attempt does not compete with them.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Callable

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


def ensure_ray(dashboard: bool = True, metrics_export_port: int = 0) -> None:
    """Join $RAY_ADDRESS when set (a `ray job submit` or a cluster), else start a local Ray.
    RAY_AUTH_MODE is set before ray.init so the driver and every client agree on it;
    ``metrics_export_port`` fixes a local Ray's Prometheus endpoint (0 = Ray's choice), so a
    scraper knows where to look."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():
        return
    kwargs = dict(ignore_reinit_error=True, log_to_driver=False)
    addr = os.environ.get("RAY_ADDRESS")
    if addr:
        ray.init(address=addr, **kwargs)
        return
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", GCS_PORT_WAIT_S)
    extra = {"_metrics_export_port": metrics_export_port} if metrics_export_port else {}
    start_with_retry(lambda: ray.init(include_dashboard=dashboard, **extra, **kwargs), ray.shutdown)
