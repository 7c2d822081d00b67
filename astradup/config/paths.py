"""A config's local paths made absolute, for processes that do not share the caller's working dir.

Serve replicas run in Ray's worker processes, and a job given to ``ray job submit`` runs inside a
temporary copy of the working dir: a relative ``data_dir`` would land somewhere else there. So
the service's builder and the jobs resolve every local path once, where it was given. URIs with a
scheme (``s3://``, a Milvus server's ``http://``, ``file://``) are left as they are.
"""
from __future__ import annotations

import dataclasses
import os

from astradup.config.models import Config


def is_local_path(path: str) -> bool:
    """A path on this machine's file system, not a URI with a scheme."""
    return "://" not in path


def absolute_path(path: str) -> str:
    """``path`` absolute (``~`` expanded) when it is local; a URI unchanged."""
    return os.path.abspath(os.path.expanduser(path)) if is_local_path(path) else path


def absolute_paths(cfg: Config) -> Config:
    """A copy of ``cfg`` whose local ``data_dir``, ``shards_dir`` and Milvus Lite file are absolute."""
    over = {key: absolute_path(val) for key in ("data_dir", "shards_dir", "milvus_uri")
            if (val := getattr(cfg, key))}
    return dataclasses.replace(cfg, **over)
