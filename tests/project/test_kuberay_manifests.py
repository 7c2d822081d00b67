"""The shape of what runs AstraDup on Kubernetes (no cluster and no Docker daemon here: shape only).

deploy/kuberay/*.yaml: KubeRay v1 objects; the RayJob's entrypoint is the documented backfill
command (README.md "Run on a cluster" and jobs/backfill.py say the same); the RayService carries
configs/serve.yaml as serveConfigV2, byte for byte; every Ray pod is one node of a cluster.yaml node
type (same instance type, no more CPU, memory or GPUs than it has, Ray told the pod's CPUs), with
cluster.yaml's scaling bounds; images and rayVersion are the Ray that constraints.txt pins. Dockerfile: on
rayproject/ray of that version (CPU tag, GPU tag as a build argument), installing with scripts/install.sh.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERAY = ROOT / "deploy" / "kuberay"
RAYJOB = KUBERAY / "rayjob-backfill.yaml"
RAYSERVICE = KUBERAY / "rayservice.yaml"
# What AWS sells as these types (vCPUs, GiB, GPUs): the nodes cluster.yaml launches.
INSTANCES = {"m6i.2xlarge": (8, 32, 0), "c6i.8xlarge": (32, 64, 0), "g5.2xlarge": (8, 32, 1)}
GROUP_TYPES = {"cpu-worker": "cpu_worker", "gpu-worker": "gpu_worker"}  # KubeRay group -> cluster.yaml type
INSTANCE_LABEL = "node.kubernetes.io/instance-type"


def _load(path: Path) -> dict:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert len(docs) == 1, f"{path.name}: one object per file"
    return docs[0]


def _cluster_yaml() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def _ray_version() -> str:
    """The tested Ray: constraints.txt pins it (pyproject.toml holds the compatible range)."""
    pin = re.search(r"^ray==([0-9.]+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert pin, "constraints.txt pins ray"
    return pin.group(1)


def _cpus(q: str) -> float:
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def _gib(q: str) -> float:
    units = {"Gi": 1.0, "Mi": 1 / 1024, "G": 1e9 / 2**30, "M": 1e6 / 2**30}
    for u, f in units.items():
        if q.endswith(u):
            return float(q[: -len(u)]) * f
    return float(q) / 2**30


def _cluster_spec(obj: dict) -> dict:
    return obj["spec"]["rayClusterSpec" if obj["kind"] == "RayJob" else "rayClusterConfig"]


def _documented_backfill() -> list[list[str]]:
    """The cluster backfill command as README.md and jobs/backfill.py's docstring write it: the
    argv after ``ray job submit ... --``, continuation lines joined."""
    import jobs.backfill

    out = []
    for text in ((ROOT / "README.md").read_text(), jobs.backfill.__doc__):
        joined = re.sub(r"\\\n\s*", " ", text)  # a backslash at the end of a line continues it
        cmds = [ln.split(" -- ", 1)[1] for ln in joined.splitlines()
                if "ray job submit" in ln and "jobs.backfill" in ln and "--source s3://" in ln]
        assert cmds, "no cluster backfill command found"
        out.append(shlex.split(cmds[0]))
    return out


@pytest.mark.parametrize("path,kind", [(RAYJOB, "RayJob"), (RAYSERVICE, "RayService")])
def test_kuberay_objects(path, kind):
    obj = _load(path)
    assert obj["apiVersion"] == "ray.io/v1" and obj["kind"] == kind
    spec = _cluster_spec(obj)
    assert spec["rayVersion"] == _ray_version()
    assert spec["authOptions"]["mode"] == "token"  # Ray's token auth stays on, as everywhere else


def test_rayjob_runs_the_documented_backfill():
    job = _load(RAYJOB)
    readme, docstring = _documented_backfill()
    assert readme == docstring, "README.md and jobs/backfill.py document different commands"
    assert shlex.split(job["spec"]["entrypoint"]) == readme
    assert readme[:3] == ["python", "-m", "jobs.backfill"]
    assert job["spec"]["shutdownAfterJobFinishes"] is True


def test_rayservice_carries_the_serve_config_file():
    from serve import config_file

    svc = _load(RAYSERVICE)
    assert svc["spec"]["serveConfigV2"] == config_file.CONFIG_PATH.read_text()
    assert config_file.with_serve_config(RAYSERVICE.read_text(), config_file.CONFIG_PATH.read_text()) == \
        RAYSERVICE.read_text()
    serve_cfg = yaml.safe_load(svc["spec"]["serveConfigV2"])
    head = _cluster_spec(svc)["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"containerPort": serve_cfg["http_options"]["port"], "name": "serve"} in head["ports"]
    # The builder refuses 0.0.0.0 without an API key: every pod has one, from a Secret, never inline.
    for c in _containers(svc):
        key = next(e for e in c["env"] if e["name"] == "ASTRADUP_API_KEY")
        assert "value" not in key and key["valueFrom"]["secretKeyRef"]


def _containers(obj: dict) -> list[dict]:
    spec = _cluster_spec(obj)
    groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
    return [g["template"]["spec"]["containers"][0] for g in groups]


@pytest.mark.parametrize("path", [RAYJOB, RAYSERVICE])
def test_pods_are_cluster_yaml_nodes(path):
    obj = _load(path)
    spec = _cluster_spec(obj)
    types = _cluster_yaml()["available_node_types"]
    version = _ray_version()
    groups = [("head", spec["headGroupSpec"])] + [(GROUP_TYPES[g["groupName"]], g) for g in spec["workerGroupSpecs"]]
    assert "cpu_worker" in {t for t, _ in groups}
    for node_type, group in groups:
        want = types[node_type]
        pod = group["template"]["spec"]
        instance = want["node_config"]["InstanceType"]
        assert pod["nodeSelector"][INSTANCE_LABEL] == instance, (node_type, pod["nodeSelector"])
        vcpus, gib, gpus = INSTANCES[instance]
        (c,) = pod["containers"]
        res = c["resources"]
        assert res["requests"] == res["limits"], f"{node_type}: a Ray pod gets what it asks for"
        cpu, mem = _cpus(str(res["limits"]["cpu"])), _gib(str(res["limits"]["memory"]))
        assert vcpus - 2 <= cpu <= vcpus - 1, f"{node_type}: one pod per node, one vCPU left to Kubernetes"
        assert 0.75 * gib <= mem <= 0.9 * gib, f"{node_type}: memory {mem} GiB of {gib}"
        assert int(res["limits"].get("nvidia.com/gpu", 0)) == gpus
        params = group["rayStartParams"]
        if node_type == "head":
            assert params["num-cpus"] == str(want["resources"]["CPU"]) == "0"  # no decode task on the head
        else:
            assert _cpus(params["num-cpus"]) == cpu  # one decode task per CPU of the pod
            assert int(params.get("num-gpus", 0)) == gpus
            assert group["minReplicas"] >= min(1, want["min_workers"]) and group["maxReplicas"] <= want["max_workers"]
            if obj["kind"] == "RayJob":  # the backfill scales as cluster.yaml does
                assert (group["minReplicas"], group["maxReplicas"]) == (want["min_workers"], want["max_workers"])
        tag = "gpu" if gpus else "cpu"
        assert c["image"].endswith(f":{version}-{tag}"), (node_type, c["image"])


def test_dockerfile_is_ray_image_plus_install_script():
    text = (ROOT / "Dockerfile").read_text()
    version = _ray_version()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    assert args["RAY_VERSION"] == version
    assert args["RAY_TAG"] == "${RAY_VERSION}-py312"  # the CPU image by default
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_TAG\}$", text, re.M)
    assert f"RAY_TAG={version}-py312-gpu" in text  # how the GPU image is built, documented in the file
    run = " ".join(re.findall(r"^RUN (.+(?:\\\n.+)*)", text, re.M))
    assert "bash scripts/install.sh" in run
    assert "pip install" not in run.split("scripts/install.sh")[0], "install.sh is the install, nothing before it"
    assert (ROOT / "scripts" / "install.sh").exists()
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
