"""One validated config object: configs/default.yaml, then a user YAML, then ASTRADUP_* env vars, then overrides.

``load_config`` merges the layers into one dict and validates it once against the model
(astradup/config/models.py: ranges, choices, strict booleans, unknown keys refused, rules across
sections). Anything wrong is one ConfigError whose text is a single line naming the key, the
value, where it was set and what is allowed::

    config: fusion.visual = -3 (ASTRADUP_FUSION__VISUAL): must be between 0 and 1

The CLI and the jobs print that line and exit with status 2; the Serve app raises it as a
click error (serve/app.py). Environment variables: ``ASTRADUP_<SECTION>__<KEY>`` or
``ASTRADUP_<KEY>`` for a top-level key (astradup/config/layers.py says how values are read).

The result is mutable (scripts and tests set fields after loading) and is not re-checked on
assignment; ``check_decode``/``check_pipeline`` re-check a changed config
where it matters, and ``dataclasses.replace`` validates the copy it makes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping, NoReturn

from pydantic import TypeAdapter, ValidationError

from astradup.config.layers import ENV_CONFIG, env_layer, merge, read_yaml
from astradup.config.messages import one_line
from astradup.config.models import (CONSISTENCY_LEVELS, DECODERS, DEVICES, KINDS, LEVELS, PHASH_MODES, WRITERS,
                                    AudioConfig, AudioCopyConfig, CatalogConfig, CommonConfig, Config, DecodeConfig,
                                    EmbedderConfig, FusionConfig, LogConfig, NotifyConfig, PipelineConfig,
                                    RetryConfig, ScoreConfig, SearchConfig, SegmentConfig, VectorsConfig)
from astradup.config.types import revalidate
from astradup.errors import ConfigError
from astradup.uris import is_lite_uri

__all__ = ["AudioConfig", "AudioCopyConfig", "CatalogConfig", "CommonConfig", "Config", "DecodeConfig",
           "EmbedderConfig", "FusionConfig", "LogConfig", "NotifyConfig", "PipelineConfig", "RetryConfig",
           "ScoreConfig", "SearchConfig", "SegmentConfig", "VectorsConfig", "CONSISTENCY_LEVELS", "DECODERS",
           "DEVICES", "KINDS", "LEVELS", "PHASH_MODES", "WRITERS", "DEFAULT_YAML", "load_config", "exit_config_error",
           "load_config_or_exit", "check_decode", "check_pipeline", "resolved_writers"]

# Package data (pyproject.toml) beside this module, so an installed wheel finds it with no source
# tree around; the repository's configs/default.yaml is a link to it.
DEFAULT_YAML = Path(__file__).resolve().parent / "default.yaml"
_ADAPTER = TypeAdapter(Config)
_TOP = {name: info.annotation for name, info in Config.__pydantic_fields__.items()}
_SECTIONS = {name for name, ann in _TOP.items() if isinstance(ann, type) and hasattr(ann, "__pydantic_fields__")}


def load_config(path: str | os.PathLike[str] | None = None,
                overrides: dict[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> Config:
    """Defaults < configs/default.yaml < ``path`` (or $ASTRADUP_CONFIG) < env < ``overrides``.

    ConfigError (one line) for an unknown key, a value of the wrong type or out of range, or
    settings that contradict each other."""
    env = dict(os.environ if environ is None else environ)
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if DEFAULT_YAML.exists():
        merge(merged, read_yaml(DEFAULT_YAML, "configs/default.yaml"), "configs/default.yaml", origins, _SECTIONS)
    user = path or env.get(ENV_CONFIG)
    if user:
        label = str(user) if path else f"{user} from {ENV_CONFIG}"
        merge(merged, read_yaml(user, label), str(user), origins, _SECTIONS)
    layer, names = env_layer(env, _TOP)
    merge(merged, layer, "", origins, _SECTIONS)
    origins.update(names)
    if overrides:
        merge(merged, overrides, "", origins, _SECTIONS)
    try:
        return _ADAPTER.validate_python(merged)
    except ValidationError as e:
        raise ConfigError(one_line(e, Config, origins=origins)) from None


def load_config_or_exit(prog: str, path: str | os.PathLike[str] | None = None,
                        overrides: dict[str, Any] | None = None) -> Config:
    """``load_config`` for a command's entry point: a bad config is one line on stderr and exit
    status 2 (as argparse does for bad arguments), never a traceback."""
    try:
        return load_config(path, overrides)
    except ConfigError as e:
        exit_config_error(prog, e)


def exit_config_error(prog: str, err: ConfigError) -> NoReturn:
    print(f"{prog}: error: {err}", file=sys.stderr)
    raise SystemExit(2)


def check_decode(cfg: DecodeConfig) -> None:
    """ConfigError naming the setting when a decode setting has no meaning (a DecodeConfig may be
    changed by assignment after loading, or built by a caller)."""
    revalidate(cfg)


def check_pipeline(cfg: Config) -> None:
    """ConfigError naming the setting when the config, changed since loading (jobs/backfill sets
    paths from its arguments), no longer holds: e.g. pipeline.writers workers on a Milvus Lite file."""
    revalidate(cfg)


def resolved_writers(cfg: Config) -> str:
    """"driver" or "workers": what ``pipeline.writers`` means for the configured Milvus URI."""
    if cfg.pipeline.writers == "auto":
        return "driver" if is_lite_uri(cfg.resolved_milvus_uri) else "workers"
    return cfg.pipeline.writers
