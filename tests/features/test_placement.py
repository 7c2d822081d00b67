"""One embedder placement for the indexing pipeline and the service (astradup/features/placement.py),
and one rule for making a config's local paths absolute (astradup/io/remote.py), both called by
every shell that needs them. No Ray: both are pure decisions from the config."""
from __future__ import annotations

import pytest

from astradup.config import load_config
from astradup.io.remote import absolute, absolute_paths
from astradup.features.placement import plan_embedder
from serve.app import deployment_options
from serve.settings import ServeSettings

GPU_CLUSTER = {"CPU": 32.0, "GPU": 2.0}
CPU_CLUSTER = {"CPU": 32.0}


def _served(cfg, resources) -> tuple[str, float]:
    """(device, GPUs per replica) of the service's embedder deployment."""
    opts = deployment_options(cfg, ServeSettings(), resources)["FrameEmbedder"]["ray_actor_options"]
    return ("gpu", opts["num_gpus"]) if opts.get("num_gpus") else ("cpu", 0.0)


@pytest.mark.parametrize("resources", [GPU_CLUSTER, CPU_CLUSTER, {}])
@pytest.mark.parametrize("device", ["auto", "cuda", "cpu"])
@pytest.mark.parametrize("per_actor", [0.0, 0.5])
def test_pipeline_and_service_place_the_embedder_alike(resources, device, per_actor):
    cfg = load_config(overrides={"embedder": {"device": device}, "pipeline": {"embed_num_gpus": per_actor}},
                      environ={})
    plan = plan_embedder(cfg, resources)
    assert _served(cfg, resources) == (plan.device, plan.num_gpus)


def test_auto_takes_the_gpus_of_a_cluster_that_has_them_in_both():
    """The disagreement this module ended: ``auto`` indexed on the GPUs and served on the CPU."""
    cfg = load_config(overrides={"embedder": {"device": "auto"}}, environ={})
    assert plan_embedder(cfg, GPU_CLUSTER).device == "gpu" and _served(cfg, GPU_CLUSTER) == ("gpu", 1.0)
    assert plan_embedder(cfg, CPU_CLUSTER).device == "cpu" and _served(cfg, CPU_CLUSTER) == ("cpu", 0.0)


def test_an_unknown_cluster_gets_gpus_only_when_asked_for():
    """Before Ray runs (``serve run`` builds the app first) only an explicit request asks for a GPU."""
    def placed(**over):
        return plan_embedder(load_config(overrides=over, environ={}), None)

    assert placed(embedder={"device": "auto"}).device == "cpu"
    assert (placed(embedder={"device": "cuda"}).device, placed(embedder={"device": "cuda"}).num_gpus) == ("gpu", 1.0)
    assert placed(pipeline={"embed_num_gpus": 0.25}).num_gpus == 0.25
    assert placed(embedder={"device": "cpu"}, pipeline={"embed_num_gpus": 1.0}).device == "cpu"


def test_local_paths_become_absolute_and_uris_stay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = absolute_paths(load_config(overrides={"data_dir": "d", "shards_dir": "~/shards", "milvus_uri": "m.db"},
                                     environ={}))
    assert (cfg.data_dir, cfg.shards_dir, cfg.milvus_uri) == \
        (str(tmp_path / "d"), str(tmp_path / "home" / "shards"), str(tmp_path / "m.db"))
    remote = absolute_paths(load_config(overrides={"data_dir": str(tmp_path), "shards_dir": "s3://b/f",
                                                   "milvus_uri": "http://h:19530"}, environ={}))
    assert (remote.shards_dir, remote.milvus_uri) == ("s3://b/f", "http://h:19530")
    assert absolute_paths(load_config(overrides={"data_dir": "d"}, environ={})).shards_dir == ""  # unset stays unset
    assert absolute("file:///videos") == "/videos" and absolute("v") == str(tmp_path / "v")
