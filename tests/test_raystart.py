"""Starting a local Ray on a busy machine: a startup timeout is retried, the failed attempt's
processes are stopped, and any other error surfaces at once."""
from __future__ import annotations

import subprocess
import time

import pytest

from astradup import raystart

TIMEOUT = Exception("The current node timed out during startup. This could happen because some of "
                    "the raylet failed to startup or the GCS has become overloaded.")


def _alive(proc: subprocess.Popen) -> bool:
    return proc.poll() is None


def test_a_startup_timeout_is_retried_after_stopping_what_the_attempt_started():
    spawned: list[subprocess.Popen] = []
    shutdowns: list[int] = []

    def init():
        # Like ray.init: it starts processes of its own, then gives up waiting for them.
        spawned.append(subprocess.Popen(["sleep", "60"]))
        if len(spawned) == 1:
            raise TIMEOUT

    try:
        raystart.start_with_retry(init, lambda: shutdowns.append(1), backoff_s=0)
        time.sleep(0.1)
        spawned[0].poll()
        assert len(spawned) == 2 and shutdowns == [1]
        assert not _alive(spawned[0]), "the failed attempt's process was left running"
        assert _alive(spawned[1]), "the successful attempt's process was stopped"
    finally:
        for p in spawned:
            p.kill()
            p.wait()


def test_other_errors_are_not_retried():
    calls = []

    def init():
        calls.append(1)
        raise ValueError("unexpected keyword argument 'include_dashbord'")

    with pytest.raises(ValueError):
        raystart.start_with_retry(init, lambda: None, backoff_s=0)
    assert calls == [1]


def test_gives_up_after_the_last_attempt_with_rays_own_error():
    calls = []

    def init():
        calls.append(1)
        raise RuntimeError("Timed out waiting for file /tmp/ray/session_x/gcs_server_port_abc")

    with pytest.raises(RuntimeError, match="Timed out waiting for file"):
        raystart.start_with_retry(init, lambda: None, attempts=3, backoff_s=0)
    assert len(calls) == 3


def test_children_lists_this_process_children():
    import os

    p = subprocess.Popen(["sleep", "30"])
    try:
        assert p.pid in raystart._children(os.getpid())
    finally:
        p.kill()
        p.wait()


def test_a_cluster_address_is_joined_without_a_local_start(monkeypatch):
    import ray

    calls = []
    monkeypatch.setenv("RAY_ADDRESS", "ray://10.0.0.1:10001")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    raystart.ensure_ray(dashboard=False)
    assert calls == [{"address": "ray://10.0.0.1:10001", "ignore_reinit_error": True, "log_to_driver": False}]
