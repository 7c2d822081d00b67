"""The AstraDup Serve application: Gateway (FastAPI ingress) -> SearchService -> FrameEmbedder.

``serve run serve.app:app`` builds it from the config (configs/default.yaml, $ASTRADUP_CONFIG,
ASTRADUP_* variables) and $ASTRADUP_API_KEY / $ASTRADUP_MAX_UPLOAD_MB; ``astradup serve`` and the
tests call ``build_app`` with a config and settings of their own.

* FrameEmbedder: frame embeddings only; autoscaled; asks for GPUs when
  ``pipeline.embed_num_gpus`` > 0 or ``embedder.device`` is cuda.
* SearchService: decode, pHash, audio, KNN, fusion, segments, verdicts. It alone opens the
  vector store, so on a Milvus Lite file (one process per database) it runs as exactly one
  replica; on a Milvus server it may scale.
* Gateway: HTTP, validation, media, thumbnails, the web page, metrics.
"""
from __future__ import annotations

import dataclasses
import os

from astradup.config import Config
from astradup.store.vectors import is_lite_uri
from serve.embedding import FrameEmbedder
from serve.gateway import Gateway
from serve.search_service import SearchService
from serve.settings import ServeSettings, config_from_env, settings_from_env

APP_NAME = "astradup"
# Requests a search replica takes besides its decode slots: searches by video_id, pings, verdicts,
# and the refusals of decodes past the slots, which must reach the replica to be answered 503.
SEARCH_OTHER_REQUESTS = 6


def absolute_paths(cfg: Config) -> Config:
    """Replicas do not share the caller's working directory: local paths are made absolute here."""
    over: dict = {"data_dir": os.path.abspath(cfg.data_dir)}
    if cfg.shards_dir and "://" not in cfg.shards_dir:
        over["shards_dir"] = os.path.abspath(cfg.shards_dir)
    if cfg.milvus_uri and is_lite_uri(cfg.milvus_uri):
        over["milvus_uri"] = os.path.abspath(cfg.milvus_uri)
    return dataclasses.replace(cfg, **over)


def embedder_gpus(cfg: Config) -> float:
    """GPUs per embedder replica: ``pipeline.embed_num_gpus``, or one when ``embedder.device`` is cuda."""
    if cfg.pipeline.embed_num_gpus > 0:
        return float(cfg.pipeline.embed_num_gpus)
    return 1.0 if cfg.embedder.device == "cuda" else 0.0


def deployment_options(cfg: Config, s: ServeSettings) -> dict[str, dict]:
    """``.options()`` of each deployment: a pure decision from the config and the settings."""
    gpus = embedder_gpus(cfg)
    emb: dict = {"ray_actor_options": {"num_gpus": gpus, "num_cpus": 0} if gpus > 0
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


def build_app(cfg: Config | None = None, settings: ServeSettings | None = None):
    """The bound application graph, ready for ``serve.run``."""
    cfg = absolute_paths(cfg or config_from_env())
    s = settings or settings_from_env()
    opts = deployment_options(cfg, s)
    embedder = FrameEmbedder.options(**opts["FrameEmbedder"]).bind(cfg.embedder)
    search = SearchService.options(**opts["SearchService"]).bind(cfg, s, embedder)
    return Gateway.options(**opts["Gateway"]).bind(cfg, s, search)


def __getattr__(name: str):
    """``serve.app:app`` is built on first access, not at import: Ray workers import this module
    to load the deployment classes and must not build (or fail to build) an app while doing so."""
    if name == "app":
        from astradup.errors import ConfigError

        try:
            return build_app()
        except ConfigError as e:  # `serve run serve.app:app`: click prints "Error: <the line>", exit 2
            import click

            err = click.ClickException(str(e))
            err.exit_code = 2
            raise err from None
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
