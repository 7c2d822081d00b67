"""The AstraDup Serve application: Gateway (FastAPI ingress) -> SearchService -> FrameEmbedder.

``build`` is its application builder, Ray's convention for an app with arguments: the same
``AppArgs`` (serve/settings.py) reach it from ``serve run serve.app:build key=value ...``, from the
``args:`` of a Serve config file (configs/serve.yaml, for ``serve deploy`` and KubeRay's
``serveConfigV2``) and, under either, from the ``ASTRADUP_*`` service variables; ``astradup serve``
calls it too. The index config is ``load_config``'s (configs/default.yaml, $ASTRADUP_CONFIG,
ASTRADUP_* config variables) with the arguments' config keys over it. Tests that already hold a
config call ``build_app``.

* FrameEmbedder: frame embeddings only; autoscaled; on GPUs or CPUs as the indexing pipeline's
  embedders are (astradup/features/placement.py).
* SearchService: decode, pHash, audio, KNN, fusion, segments, verdicts. It alone opens the
  vector store, so on a Milvus Lite file (one process per database) it runs as exactly one
  replica; on a Milvus server it may scale.
* Gateway: HTTP, validation, media, thumbnails, the web page, metrics.
"""
# No ``from __future__ import annotations``: Ray validates the builder's argument into AppArgs only
# when the annotation is the class itself, not a string.
from typing import Mapping

import click
from ray.serve import Application

from astradup.config import Config
from astradup.features.placement import plan_embedder
from astradup.errors import ConfigError
from astradup.io.remote import absolute_paths
from astradup.uris import is_lite_uri
from serve.embedding import FrameEmbedder
from serve.gateway import Gateway
from serve.hosts import BindRefused, check_bind
from serve.search_service import SearchService
from serve.settings import AppArgs, ServeSettings, args_from_env

APP_NAME = "astradup"
# Requests a search replica takes besides its decode slots: searches by video_id, pings, verdicts,
# and the refusals of decodes past the slots, which must reach the replica to be answered 503.
SEARCH_OTHER_REQUESTS = 6


def cluster_resources() -> dict[str, float] | None:
    """The running Ray cluster's resources, None when this process has not joined one (yet)."""
    import ray

    return ray.cluster_resources() if ray.is_initialized() else None


def deployment_options(cfg: Config, s: ServeSettings, resources: Mapping[str, float] | None = None
                       ) -> dict[str, dict]:
    """``.options()`` of each deployment: a pure decision from the config, the settings and the
    cluster's resources (None: unknown). The embedder is placed as the indexing pipeline places
    its actors (``plan_embedder``); its replica counts are the settings'."""
    plan = plan_embedder(cfg, resources)
    emb: dict = {"ray_actor_options": {"num_gpus": plan.num_gpus, "num_cpus": 0} if plan.device == "gpu"
                 else {"num_cpus": s.embedder_num_cpus}}
    if s.embedder_max_replicas > s.embedder_min_replicas:
        emb["autoscaling_config"] = {"min_replicas": s.embedder_min_replicas, "max_replicas": s.embedder_max_replicas,
                                     "target_ongoing_requests": 2}
    else:
        emb["num_replicas"] = s.embedder_min_replicas
    return {
        "FrameEmbedder": emb,
        # One process per Milvus Lite file: the search deployment must be that one process.
        "SearchService": {"num_replicas": 1 if is_lite_uri(cfg.resolved_milvus_uri) else s.search_replicas,
                          "ray_actor_options": {"num_cpus": s.search_num_cpus},
                          "max_ongoing_requests": s.decode_slots + SEARCH_OTHER_REQUESTS},
        "Gateway": {"num_replicas": s.gateway_replicas, "ray_actor_options": {"num_cpus": s.gateway_num_cpus}},
    }


def build_app(cfg: Config, settings: ServeSettings) -> Application:
    """The bound application graph of an already loaded config and settings."""
    cfg = absolute_paths(cfg)  # replicas do not share the caller's working directory
    opts = deployment_options(cfg, settings, cluster_resources())
    embedder = FrameEmbedder.options(**opts["FrameEmbedder"]).bind(cfg.embedder)
    search = SearchService.options(**opts["SearchService"]).bind(cfg, settings, embedder)
    return Gateway.options(**opts["Gateway"]).bind(cfg, settings, search)


class ConfigExit(click.ClickException, ConfigError):
    """A config error as Ray's CLI shows one (``Error: <the line>``, exit 2), still a ConfigError
    for callers that handle those (``astradup serve``)."""

    exit_code = 2


def resolve(args: AppArgs, environ: dict[str, str] | None = None) -> AppArgs:
    """The explicit arguments over the ``ASTRADUP_*`` service variables, validated once more as a
    whole (an API key usually comes from the environment: a Secret, never the config file)."""
    return args_from_env(environ, **args.model_dump(exclude_unset=True))


def build(args: AppArgs) -> Application:
    """Application builder: ``serve run serve.app:build key=value``, or ``import_path`` + ``args``
    of a Serve config file. Refuses (BindRefused) a non-loopback ``bind_host`` without an API key
    unless ``insecure``: the open-API check ``astradup serve`` makes, for Ray's own CLI too."""
    args = resolve(args)
    check_bind(args.bind_host, args.api_key, args.insecure)
    try:
        cfg = args.load_config()
    except ConfigError as e:  # `serve run` / `serve deploy`: click prints "Error: <the line>", exit 2
        raise ConfigExit(str(e)) from None
    return build_app(cfg, args.settings())


__all__ = ["APP_NAME", "AppArgs", "BindRefused", "build", "build_app", "deployment_options"]
