"""Where the frame embedder runs (GPU or CPU, and how much of each per actor), from the config.

One decision for both places that start embedders: the indexing pipeline's actor pool
(astradup/pipeline.py) and the service's embedder deployment (serve/app.py). They used to decide
apart, and an ``embedder.device: auto`` config then indexed on the GPUs and served on the CPU. A
pure function of the config and the cluster's resources (``ray.cluster_resources()``), no Ray
import, so it is tested without a cluster.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from astradup.config import Config


@dataclass(frozen=True)
class EmbedPlan:
    """How the embedder actors are placed: a pure decision from the config and the cluster's resources."""

    device: str  # "gpu" | "cpu"
    num_gpus: float  # per actor
    num_cpus: float  # per actor
    min_size: int
    max_size: int


def plan_embedder(cfg: Config, resources: Mapping[str, float] | None) -> EmbedPlan:
    """GPU actors when the cluster has GPUs (and the embedder is not pinned to the CPU), else CPU ones.

    On GPUs the pool may grow to one actor per ``embed_num_gpus`` share (1 GPU when unset) of
    the GPUs present; ``embed_concurrency`` actors start at once. CPU actors are a fixed pool of
    ``embed_concurrency``, since every CPU they hold is one a decoder cannot use.

    ``resources`` None: no cluster to ask yet (a Serve application built before Ray starts, as
    ``serve run`` does). Then only an explicit request (``embedder.device: cuda`` or
    ``pipeline.embed_num_gpus`` > 0) asks for a GPU, which Ray waits for or an autoscaler adds.
    """
    n = max(1, cfg.pipeline.embed_concurrency)
    if cfg.embedder.device == "cpu":
        return EmbedPlan("cpu", 0.0, 1.0, n, n)
    asked = cfg.pipeline.embed_num_gpus if cfg.pipeline.embed_num_gpus > 0 else 1.0
    if resources is None:
        explicit = cfg.pipeline.embed_num_gpus > 0 or cfg.embedder.device == "cuda"
        gpus = asked if explicit else 0.0
    else:
        gpus = float(resources.get("GPU", 0.0))
    if gpus > 0:
        # More GPUs per actor than the cluster has would leave the pool waiting forever.
        per = min(asked, gpus)
        most = max(1, int(gpus // per))
        # The actor's host work (resize, unpickling frames) is light next to decoding; a CPU
        # reserved for it would idle a decoder on the GPU node.
        return EmbedPlan("gpu", per, 0.0, min(n, most), most)
    return EmbedPlan("cpu", 0.0, 1.0, n, n)
