"""Starting a local Ray on a busy machine: a startup timeout is retried, the failed attempt's
processes are stopped, and any other error surfaces at once. And a local Ray is a private one:
token auth on, the token made 0600 where Ray looks for it, nothing listening beyond loopback."""
from __future__ import annotations

import ipaddress
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from astradup import raystart

ROOT = Path(__file__).resolve().parents[2]

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
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.delenv("RAY_AUTH_MODE")  # unset, and put back as it was afterwards
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append((kw, os.environ.get("RAY_AUTH_MODE"))))
    raystart.ensure_ray(dashboard=False)
    # Ray only sends its token to an explicit address when told to: the driver is told.
    assert calls == [({"address": "ray://10.0.0.1:10001", "ignore_reinit_error": True, "log_to_driver": False},
                      "token")]


def test_a_loopback_address_is_joined_as_loopback(monkeypatch):
    """A driver joining a Ray on this machine's loopback takes the loopback address as its own
    (else it looks for the GCS at the machine's outside address, where nothing listens)."""
    import ray
    from ray._private import ray_constants

    seen = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.append((kw["address"], ray_constants.ENABLE_RAY_CLUSTER)))
    for addr in ("127.0.0.1:6379", "localhost:6379", "[::1]:6379", "10.0.0.1:6379", "ray://10.0.0.1:10001"):
        monkeypatch.setenv("RAY_ADDRESS", addr)
        raystart.ensure_ray(dashboard=False)
    assert seen == [("127.0.0.1:6379", False), ("localhost:6379", False), ("[::1]:6379", False),
                    ("10.0.0.1:6379", True), ("ray://10.0.0.1:10001", True)]
    assert ray_constants.ENABLE_RAY_CLUSTER  # put back


# ---------------------------------------------------------------- token auth and loopback binding


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """An empty HOME and no token in the environment: Ray's default token file is HOME/.ray/auth_token."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_missing_token_is_made_owner_only_where_ray_looks_and_then_kept(home, monkeypatch):
    path = raystart.ensure_token()
    assert path == home / ".ray" / "auth_token" == raystart.default_token_path()
    token = path.read_text()
    assert len(token) == 64 and int(token, 16) >= 0  # 256 random bits, hex, as `ray get-auth-token`
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    assert raystart.ensure_token() == path and path.read_text() == token  # kept, not replaced
    assert not [p for p in path.parent.iterdir() if p.name != "auth_token"]  # no temporary left

    path.chmod(0o644)  # an existing token others can read is narrowed
    raystart.ensure_token()
    assert _mode(path) == 0o600 and path.read_text() == token

    custom = home / "secrets" / "ray_token"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(custom))
    assert raystart.ensure_token() == custom and _mode(custom) == 0o600 and custom.read_text() != token

    monkeypatch.setenv("RAY_AUTH_TOKEN", "t" * 64)  # the token in the environment: no file needed
    custom.unlink()
    assert raystart.ensure_token() is None and not custom.exists()


def test_a_local_ray_starts_with_token_auth_and_on_loopback_unless_told(home, monkeypatch):
    import ray
    from ray._private import ray_constants

    seen = []

    def init(**kw):
        seen.append((kw, os.environ.get("RAY_AUTH_MODE"), os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"),
                     ray_constants.ENABLE_RAY_CLUSTER))

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.delenv("RAY_AUTH_MODE")
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    before = ray_constants.ENABLE_RAY_CLUSTER

    raystart.ensure_ray(dashboard=False)
    kw, mode, local_only, cluster = seen[-1]
    assert mode == "token" and (home / ".ray" / "auth_token").is_file()
    assert kw["dashboard_host"] == "127.0.0.1" and local_only == "0" and cluster is False
    # Only while Ray starts: this process's own idea of its address comes back afterwards.
    assert ray_constants.ENABLE_RAY_CLUSTER == before and "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ

    raystart.ensure_ray(dashboard=False, host="0.0.0.0")  # told otherwise: every interface
    kw, mode, local_only, cluster = seen[-1]
    assert kw["dashboard_host"] == "0.0.0.0" and "_node_ip_address" not in kw and local_only is None
    assert mode == "token"


def _listening(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every listening TCP socket the given processes hold (Linux /proc)."""
    inodes = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes[target[8:-1]] = pid
    out = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            rows = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if f[3] != "0A" or f[9] not in inodes:  # 0A = LISTEN
                continue
            hexip, hexport = f[1].split(":")
            raw = bytes.fromhex(hexip)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # per-word byte order
            out.append((inodes[f[9]], socket.inet_ntop(family, raw), int(hexport, 16)))
    return out


def _descendants(pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        out.add(p)
        todo.extend(raystart._children(p))
    return out


def _is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    return addr.is_loopback or bool(getattr(addr, "ipv4_mapped", None) and addr.ipv4_mapped.is_loopback)


# A driver that starts its local Ray the project's way, says where the GCS is, waits for stdin to close.
_DRIVER = """
import sys, ray
from astradup.raystart import ensure_ray
ensure_ray(dashboard=False)
print("GCS", ray._private.worker.global_worker.node.gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_local_ray_refuses_a_client_without_its_token_and_listens_on_loopback_only(tmp_path):
    home, stranger = tmp_path / "home", tmp_path / "stranger"
    home.mkdir()
    stranger.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    driver = subprocess.Popen([sys.executable, "-c", _DRIVER], env=env, cwd=tmp_path, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ray_pids: set[int] = set()
    try:
        lines = []
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            line = driver.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("GCS "):
                break
        assert lines and lines[-1].startswith("GCS "), "".join(lines)[-3000:]
        gcs = lines[-1].split()[1]
        host, port = gcs.rsplit(":", 1)
        assert host == "127.0.0.1"

        token = home / ".ray" / "auth_token"
        assert token.is_file() and _mode(token) == 0o600

        ray_pids = _descendants(driver.pid)
        sockets = _listening(ray_pids)
        assert any(p == int(port) for _, _, p in sockets), sockets  # the GCS itself was seen
        beyond = [(pid, ip, p) for pid, ip, p in sockets if not _is_loopback(ip)]
        assert not beyond, f"listening beyond loopback: {beyond}"

        def ray_status(**extra: str) -> subprocess.CompletedProcess:
            # Same machine (the only place a loopback Ray can be reached from); the client must not
            # rewrite 127.0.0.1 into this host's external address, hence Ray's single-machine switch.
            cenv = {k: v for k, v in env.items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
            cenv.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", **extra)
            return subprocess.run([str(Path(sys.executable).parent / "ray"), "status", "--address", gcs],
                                  env=cenv, capture_output=True, text=True, timeout=60)

        refused = "Authentication token is missing or incorrect"
        nobody = ray_status(HOME=str(stranger))  # no token anywhere, auth mode left to Ray
        assert nobody.returncode != 0 and refused in nobody.stdout + nobody.stderr, nobody.stderr[-2000:]
        wrong = ray_status(HOME=str(stranger), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 64)
        assert wrong.returncode != 0 and refused in wrong.stdout + wrong.stderr, wrong.stderr[-2000:]
        owner = ray_status(RAY_AUTH_MODE="token")  # the same HOME as the driver: its token
        assert owner.returncode == 0, owner.stderr[-2000:]
    finally:
        driver.stdin.close()
        try:
            driver.wait(timeout=30)
        except subprocess.TimeoutExpired:
            driver.kill()
            driver.wait()
        raystart._stop({p for p in ray_pids if p != driver.pid and os.path.exists(f"/proc/{p}")})
