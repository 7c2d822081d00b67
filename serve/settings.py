"""Settings of the HTTP service that are not part of the index config: the API key, the upload
limit and how the three deployments are sized.

The two environment variables below are read here and removed from what ``load_config`` sees,
because ``load_config`` treats every ``ASTRADUP_*`` variable as a config key.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from astradup.config import Config, load_config

ENV_API_KEY = "ASTRADUP_API_KEY"
ENV_MAX_UPLOAD_MB = "ASTRADUP_MAX_UPLOAD_MB"
ENV_ALLOWED_HOSTS = "ASTRADUP_ALLOWED_HOSTS"  # comma-separated Host names besides the bind's own
ENV_DECODE_SLOTS = "ASTRADUP_DECODE_SLOTS"
SERVE_ENV = (ENV_API_KEY, ENV_MAX_UPLOAD_MB, ENV_ALLOWED_HOSTS, ENV_DECODE_SLOTS)
MB = 1 << 20
DEFAULT_MAX_UPLOAD_MB = 512


@dataclass(frozen=True)
class ServeSettings:
    api_key: str = ""  # "" = no key required
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * MB
    max_query_seconds: float = 1800.0  # a longer query is searched on its first 30 min (bounds memory and time)
    # Wall time one query's decode may take (decode.max_decode_seconds for queries): a file made to
    # be expensive (4K at 30 fps with one keyframe a minute) is refused once it passes this, not
    # decoded for minutes while holding a decode slot.
    max_decode_seconds: float = 60.0
    # Pictures larger than this are refused before decoding (decode.max_pixels for queries): 4K UHD.
    max_query_pixels: int = 3840 * 2160
    gateway_replicas: int = 1
    search_replicas: int = 1  # forced to 1 on a Milvus Lite file (one process per database)
    embedder_min_replicas: int = 1
    embedder_max_replicas: int = 2
    search_num_cpus: float = 1.0
    embedder_num_cpus: float = 1.0  # CPU embedder replicas; a GPU replica asks for 0 CPUs
    gateway_num_cpus: float = 0.0  # the gateway mostly waits on I/O and the other deployments
    # Media decodes (upload and uri searches) one search replica runs at once. One more is answered
    # 503 with Retry-After at once rather than queued: a few hostile or merely large uploads must
    # not take every CPU and request slot of the replica, so searches by video_id and /healthz's
    # ping still answer while they run.
    decode_slots: int = 2
    decode_retry_after_s: int = 5  # the Retry-After of that 503
    # The address the HTTP proxy listens on (set by serve.local.start): the gateway answers only
    # Host headers that name it (serve/hosts.py), which stops DNS rebinding.
    bind_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()  # further Host names clients use ("*" = any)

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1:
            raise ValueError("max_upload_bytes must be positive")
        if min(self.gateway_replicas, self.search_replicas, self.embedder_min_replicas) < 1:
            raise ValueError("replica counts must be >= 1")
        if self.embedder_max_replicas < self.embedder_min_replicas:
            raise ValueError("embedder_max_replicas must be >= embedder_min_replicas")
        if self.decode_slots < 1 or self.decode_retry_after_s < 1:
            raise ValueError("decode_slots and decode_retry_after_s must be >= 1")
        if not (self.max_decode_seconds >= 0 and self.max_query_pixels >= 0 and self.max_query_seconds >= 0):
            raise ValueError("max_decode_seconds, max_query_pixels and max_query_seconds must be >= 0 (0 = no limit)")


def settings_from_env(environ: dict[str, str] | None = None, **overrides: Any) -> ServeSettings:
    env = os.environ if environ is None else environ
    s = ServeSettings(api_key=env.get(ENV_API_KEY, ""))
    raw = env.get(ENV_MAX_UPLOAD_MB, "").strip()
    if raw:
        try:
            mb = float(raw)
        except ValueError:
            raise ValueError(f"{ENV_MAX_UPLOAD_MB}={raw!r} is not a number of megabytes") from None
        s = replace(s, max_upload_bytes=max(1, int(mb * MB)))
    hosts = tuple(h.strip() for h in env.get(ENV_ALLOWED_HOSTS, "").split(",") if h.strip())
    if hosts:
        s = replace(s, allowed_hosts=hosts)
    raw = env.get(ENV_DECODE_SLOTS, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{ENV_DECODE_SLOTS}={raw!r} is not a whole number >= 1")
        s = replace(s, decode_slots=int(raw))
    return replace(s, **overrides) if overrides else s


def config_from_env(path: str | None = None, overrides: dict[str, Any] | None = None,
                    environ: dict[str, str] | None = None) -> Config:
    """``load_config`` without the service's own variables (they are not config keys)."""
    env = dict(os.environ if environ is None else environ)
    for name in SERVE_ENV:
        env.pop(name, None)
    return load_config(path, overrides, env)
