"""What the HTTP service is told besides the index config: one typed model, three ways in.

``ServeSettings`` is what the deployments receive (API key, upload limit, how the three deployments
are sized). ``AppArgs`` is the application builder's argument (``serve.app:build``): the settings
plus where the index config comes from. It is filled from

* ``serve run serve.app:build key=value ...`` and the ``args:`` of a Serve config file
  (configs/serve.yaml), which Ray validates into ``AppArgs`` before calling the builder;
* the ``ASTRADUP_*`` service variables below (``astradup serve``, a pod's env from a Secret),
  which ``args_from_env`` lays under the explicit arguments before validating them once, with the
  same model, so an env value and a ``key=value`` are refused for the same reasons.

The four service variables are removed from what ``load_config`` sees, because ``load_config``
treats every other ``ASTRADUP_*`` variable as a config key.
"""
from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from astradup.config import Config, load_config

ENV_API_KEY = "ASTRADUP_API_KEY"
ENV_MAX_UPLOAD_MB = "ASTRADUP_MAX_UPLOAD_MB"
ENV_ALLOWED_HOSTS = "ASTRADUP_ALLOWED_HOSTS"  # comma-separated Host names besides the bind's own
ENV_DECODE_SLOTS = "ASTRADUP_DECODE_SLOTS"
SERVE_ENV = (ENV_API_KEY, ENV_MAX_UPLOAD_MB, ENV_ALLOWED_HOSTS, ENV_DECODE_SLOTS)
ENV_FIELDS = {ENV_API_KEY: "api_key", ENV_MAX_UPLOAD_MB: "max_upload_mb", ENV_ALLOWED_HOSTS: "allowed_hosts",
              ENV_DECODE_SLOTS: "decode_slots"}
MB = 1 << 20
DEFAULT_MAX_UPLOAD_MB = 512


class ServeSettings(BaseModel):
    """The service's own settings, validated on construction (frozen: replicas share one copy)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: str = Field("", description='"" = no key required')
    max_upload_bytes: int = Field(DEFAULT_MAX_UPLOAD_MB * MB, ge=1)
    # A longer query is searched on its first 30 min (bounds memory and time); 0 = no limit.
    max_query_seconds: float = Field(1800.0, ge=0)
    # Wall time one query's decode may take (decode.max_decode_seconds for queries): a file made to
    # be expensive (4K at 30 fps with one keyframe a minute) is refused once it passes this, not
    # decoded for minutes while holding a decode slot.
    max_decode_seconds: float = Field(60.0, ge=0)
    # Pictures larger than this are refused before decoding (decode.max_pixels for queries): 4K UHD.
    max_query_pixels: int = Field(3840 * 2160, ge=0)
    gateway_replicas: int = Field(1, ge=1)
    search_replicas: int = Field(1, ge=1, description="forced to 1 on a Milvus Lite file (one process per database)")
    embedder_min_replicas: int = Field(1, ge=1)
    embedder_max_replicas: int = Field(2, ge=1)
    search_num_cpus: float = Field(1.0, ge=0)
    embedder_num_cpus: float = Field(1.0, ge=0, description="CPU embedder replicas; a GPU replica asks for 0 CPUs")
    gateway_num_cpus: float = Field(0.0, ge=0, description="the gateway mostly waits on I/O and the other deployments")
    # Media decodes (upload and uri searches) one search replica runs at once. One more is answered
    # 503 with Retry-After at once rather than queued: a few hostile or merely large uploads must
    # not take every CPU and request slot of the replica, so searches by video_id and /healthz's
    # ping still answer while they run.
    decode_slots: int = Field(2, ge=1)
    decode_retry_after_s: int = Field(5, ge=1, description="the Retry-After of that 503")
    # The address the HTTP proxy listens on (serve.local.start sets it; in a Serve config file it
    # must repeat http_options.host): the gateway answers only Host headers that name it
    # (serve/hosts.py), which stops DNS rebinding.
    bind_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = Field((), description='further Host names clients use ("*" = any)')

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, v: Any) -> Any:
        """A comma-separated string (an env variable, a ``key=value`` argument) or a list."""
        if isinstance(v, str):
            return tuple(h.strip() for h in v.split(",") if h.strip())
        return v

    @model_validator(mode="after")
    def _replicas_ordered(self) -> ServeSettings:
        if self.embedder_max_replicas < self.embedder_min_replicas:
            raise ValueError("embedder_max_replicas must be >= embedder_min_replicas")
        return self

    def replace(self, **changes: Any) -> ServeSettings:
        """A copy with ``changes``, validated again (``model_copy`` alone would not check them)."""
        return type(self).model_validate({**self.model_dump(exclude_unset=True), **changes})


class AppArgs(ServeSettings):
    """The argument of ``serve.app:build``: the settings plus where the index config comes from.

    Config keys are ``load_config`` overrides (validated by it, not here): ``config`` (a YAML file;
    else $ASTRADUP_CONFIG, then configs/default.yaml), the common ``data_dir``, ``milvus_uri`` and
    ``shards_dir``, and ``overrides`` for any other key (nested mappings, as in the YAML).
    """

    config: str | None = None
    data_dir: str | None = None
    milvus_uri: str | None = None
    shards_dir: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    max_upload_mb: float | None = Field(None, gt=0, description="sets max_upload_bytes in megabytes")
    # Listening beyond loopback without an API key is refused (serve/hosts.py) unless this is set.
    insecure: bool = False

    @model_validator(mode="before")
    @classmethod
    def _megabytes(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("max_upload_mb") not in (None, ""):
            try:
                mb = float(data["max_upload_mb"])
            except (TypeError, ValueError):
                return data  # the field's own check says why
            if mb > 0:
                size = max(1, int(mb * MB))
                if data.get("max_upload_bytes") not in (None, size):
                    raise ValueError("give max_upload_mb or max_upload_bytes, not two different limits")
                data = {**data, "max_upload_bytes": size}
        return data

    def settings(self) -> ServeSettings:
        return ServeSettings.model_validate(self.model_dump(include=set(ServeSettings.model_fields),
                                                            exclude_unset=True))

    def config_overrides(self) -> dict[str, Any]:
        over = {k: v for k in ("data_dir", "milvus_uri", "shards_dir") if (v := getattr(self, k)) is not None}
        return {**self.overrides, **over}

    def load_config(self, environ: dict[str, str] | None = None) -> Config:
        return config_from_env(self.config, self.config_overrides(), environ)


def env_args(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The service variables that are set (and not blank), as ``AppArgs`` fields, unvalidated."""
    env = os.environ if environ is None else environ
    return {field: env[name].strip() for name, field in ENV_FIELDS.items() if env.get(name, "").strip()}


def args_from_env(environ: dict[str, str] | None = None, **explicit: Any) -> AppArgs:
    """``AppArgs`` from the service variables with ``explicit`` arguments over them, validated once.

    A refused value raises ValueError naming its variable when it came from the environment."""
    from_env = env_args(environ)
    if "max_upload_bytes" in explicit:  # an explicit limit in bytes wins over the variable's megabytes
        from_env.pop("max_upload_mb", None)
    try:
        return AppArgs.model_validate({**from_env, **explicit})
    except ValidationError as e:
        names = {field: name for name, field in ENV_FIELDS.items()}
        parts = []
        for err in e.errors():
            field = str(err["loc"][0]) if err.get("loc") else ""
            where = f"{names[field]}={from_env[field]!r}" if field in from_env and field not in explicit else field
            parts.append(f"{where}: {err['msg']}" if where else err["msg"])
        raise ValueError("; ".join(parts)) from None


def settings_from_env(environ: dict[str, str] | None = None, **overrides: Any) -> ServeSettings:
    """The settings from the service variables, ``overrides`` winning (``astradup serve``)."""
    return args_from_env(environ, **overrides).settings()


def config_from_env(path: str | None = None, overrides: dict[str, Any] | None = None,
                    environ: dict[str, str] | None = None) -> Config:
    """``load_config`` without the service's own variables (they are not config keys)."""
    env = dict(os.environ if environ is None else environ)
    for name in SERVE_ENV:
        env.pop(name, None)
    return load_config(path, overrides, env)
