"""The Serve config file and the application builder, the way Ray runs them.

* configs/serve.yaml is what ``python -m serve.config_file`` makes now (kept in sync);
* the builder validates its arguments with AppArgs, strings too (``serve run ... key=value``),
  with the ASTRADUP_* service variables under them;
* ``serve deploy`` (Ray's CLI, through the dashboard's REST API, as KubeRay does with
  serveConfigV2) of that file, on a local Ray with token auth on and bound to loopback, answers
  /healthz and a search. The file is deployed as checked in except for what a machine must change:
  the HTTP address (127.0.0.1 and a free port instead of the pod's 0.0.0.0:8000) and the builder's
  ``data_dir`` and ``bind_host`` arguments, set in a copy's ``args`` (the typed, validated way in;
  the same place an operator changes them); the API key reaches the builder as on Kubernetes, from
  the environment (the application's runtime_env here, a Secret there), never from the file.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from serve import config_file
from serve.local import wait_ready

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "deploy-test-key-0123"

HEAD = """
import sys, time
import ray
from astradup import raystart
from astradup.catalog import Catalog
from astradup.config import load_config
from astradup.pipeline import index

lib, data, dash_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
raystart._token_auth_on()
raystart.ensure_token()
raystart.refresh_auth_state()
with raystart._bound_to_loopback():
    ctx = ray.init(num_cpus=4, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=dash_port,
                   log_to_driver=False)
cfg = load_config(overrides={"data_dir": data, "pipeline": {"dashboard": False, "decode_concurrency": 1}})
catalog = Catalog(cfg)
report = index([lib], cfg, catalog=catalog)
catalog.vectors.close()  # the search replica must be the one process holding the Lite file
ids = {r["uri"].rsplit("/", 1)[-1]: v for v, r in catalog.shards.latest_status().items()}
print("READY", report.indexed, ids["c.mp4"], flush=True)
while True:
    time.sleep(60)
"""


def test_serve_yaml_is_in_sync():
    """Regenerated from the builder now, byte for byte: a change to the deployments' options or the
    arguments without `python -m serve.config_file` fails here."""
    assert config_file.CONFIG_PATH.read_text() == config_file.render(), \
        "configs/serve.yaml is out of date: run python -m serve.config_file"
    doc = yaml.safe_load(config_file.CONFIG_PATH.read_text())
    (app,) = doc["applications"]
    assert app["import_path"] == "serve.app:build" and "api_key" not in app["args"]
    assert {d["name"] for d in app["deployments"]} == {"Gateway", "SearchService", "FrameEmbedder"}


def test_builder_validates_its_arguments(monkeypatch, tmp_path):
    """Ray's own call of a builder (what `serve run` and a config file's args go through)."""
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary as call
    from ray.serve import Application

    from serve.app import build, resolve
    from serve.settings import AppArgs

    for name in ("ASTRADUP_API_KEY", "ASTRADUP_DECODE_SLOTS", "ASTRADUP_MAX_UPLOAD_MB", "ASTRADUP_ALLOWED_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(call(build, {"data_dir": str(tmp_path), "decode_slots": "3", "max_upload_mb": "2"}),
                      Application)
    for bad in ({"decode_slots": "0"}, {"decode_slots": "two"}, {"max_upload_mb": "-1"}, {"no_such": 1},
                {"embedder_min_replicas": 3, "embedder_max_replicas": 2}):
        with pytest.raises(ValueError):
            call(build, {"data_dir": str(tmp_path), **bad})
    from serve.hosts import BindRefused

    with pytest.raises(BindRefused):
        call(build, {"data_dir": str(tmp_path), "bind_host": "0.0.0.0"})
    # The service variables lie under the explicit arguments, validated by the same model.
    monkeypatch.setenv("ASTRADUP_DECODE_SLOTS", "3")
    monkeypatch.setenv("ASTRADUP_API_KEY", "k")
    args = resolve(AppArgs.model_validate({"decode_slots": "4", "max_upload_mb": "1.5"}))
    assert args.decode_slots == 4 and args.api_key == "k" and args.settings().max_upload_bytes == int(1.5 * (1 << 20))
    assert resolve(AppArgs()).decode_slots == 3
    # An explicit limit wins over the variable, in either unit; two different explicit limits are refused.
    monkeypatch.setenv("ASTRADUP_MAX_UPLOAD_MB", "8")
    assert resolve(AppArgs.model_validate({"max_upload_bytes": 1000})).max_upload_bytes == 1000
    assert resolve(AppArgs.model_validate({"max_upload_mb": "2"})).max_upload_bytes == 2 << 20
    assert resolve(AppArgs()).max_upload_bytes == 8 << 20
    with pytest.raises(ValueError, match="not two different"):
        AppArgs.model_validate({"max_upload_mb": 2, "max_upload_bytes": 1000})
    assert isinstance(call(build, {"data_dir": str(tmp_path), "bind_host": "0.0.0.0"}), Application)
    monkeypatch.setenv("ASTRADUP_DECODE_SLOTS", "none")
    with pytest.raises(ValueError, match="ASTRADUP_DECODE_SLOTS"):
        resolve(AppArgs())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_line(proc: subprocess.Popen, log: Path, tag: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith(tag + " "):
                return line
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise RuntimeError(f"no {tag} line:\n{log.read_text()[-4000:]}")


def test_serve_deploy_of_the_config_file_answers(tmp_path):
    from tests.media import make_copy, make_video

    t0 = time.monotonic()
    lib = tmp_path / "library"
    lib.mkdir()
    c = make_video(lib / "c.mp4", seconds=10, size=(320, 240), source="cellauto", audio=None, seed=3)
    make_video(lib / "d.mp4", seconds=8, size=(320, 240), source="gradients", audio="sine", seed=4)
    query = make_copy(c, tmp_path / "c_query.mp4", vf="scale=240:180", crf=30)
    data = tmp_path / "data"
    dash_port, http_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "ASTRADUP_API_KEY")}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code in every Ray worker, as the image's install does
    log = tmp_path / "head.log"
    with open(log, "w") as out:
        head = subprocess.Popen([sys.executable, "-c", HEAD, str(lib), str(data), str(dash_port)], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    dashboard = f"http://127.0.0.1:{dash_port}"
    cli = [str(Path(sys.executable).parent / "serve")]
    cli_env = {**env, "RAY_AUTH_MODE": "token"}  # the token: ~/.ray/auth_token, which the head used
    try:
        _, indexed, c_id = _wait_line(head, log, "READY", 400).split()
        assert indexed == "2"
        t_ready = time.monotonic()
        doc = yaml.safe_load(config_file.CONFIG_PATH.read_text())
        doc["http_options"] = {"host": "127.0.0.1", "port": http_port}
        (app,) = doc["applications"]
        app["args"].update(data_dir=str(data), bind_host="127.0.0.1")
        app["runtime_env"] = {"env_vars": {"ASTRADUP_API_KEY": API_KEY}}
        deployed = tmp_path / "serve.yaml"
        deployed.write_text(yaml.safe_dump(doc, sort_keys=False))
        subprocess.run(cli + ["deploy", str(deployed), "--address", dashboard], env=cli_env, check=True,
                       timeout=120)
        url = f"http://127.0.0.1:{http_port}"
        try:
            wait_ready(url, timeout=300)
        except TimeoutError as e:
            status = subprocess.run(cli + ["status", "--address", dashboard], env=cli_env, capture_output=True,
                                    text=True, timeout=60)
            pytest.fail(f"{e}; serve status:\n{status.stdout[-3000:]}")
        assert requests.get(url + "/healthz", timeout=15).json()["videos"] == 2
        t_healthy = time.monotonic()
        # The key came from the environment, not the file: without it the API is closed.
        assert requests.get(url + "/videos", timeout=30).status_code == 401
        with open(query, "rb") as f:
            r = requests.post(url + "/search", files={"file": ("c_query.mp4", f, "video/mp4")},
                              headers={"X-API-Key": API_KEY}, timeout=180)
        assert r.status_code == 200, r.text[:500]
        matches = r.json()["matches"]
        assert matches and matches[0]["source_id"] == c_id, matches[:2]
        print(f"\n[serve deploy] head+index {t_ready - t0:.1f} s, deploy to healthy {t_healthy - t_ready:.1f} s, "
              f"search {time.monotonic() - t_healthy:.1f} s")
    finally:
        subprocess.run(cli + ["shutdown", "-y", "--address", dashboard], env=cli_env, capture_output=True,
                       timeout=120)
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        head.wait()
