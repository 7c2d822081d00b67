"""Which URIs name a remote store, and the one fsspec file system that reads them.

Every reader of a video, a shard root or a report's thumbnail source asks the same two questions
(is it remote? which file system opens it?), so the rule and the s3fs set-up live here, once:

* A URI is remote when it starts with a scheme of two or more characters followed by ``://``
  (RFC 3986 scheme characters), other than ``file``. A Windows drive (``C:\\x`` or ``C://x``) is
  not a scheme, and ``://`` later in a path (``/data/a://b.mp4``) does not make it remote.
* ``file://`` (any case) names a local path: :func:`local_path` drops it.
* S3 endpoints come from the caller (``s3_endpoint``) or the standard AWS variables.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

from astradup.config import Config
from astradup.uris import is_lite_uri

# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 3.1); two characters at least, so
# that a drive letter is never taken for one.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+)://")


def scheme_of(uri: str) -> str:
    """The URI's scheme in lower case ("s3", "file"), or "" for a plain path."""
    m = _SCHEME.match(uri)
    return m.group(1).lower() if m else ""


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names an object in a remote store (anything with a scheme but ``file``)."""
    return scheme_of(uri) not in ("", "file")


def local_path(uri: str) -> str:
    """The file-system path a local URI names: a ``file://`` prefix (any case) dropped."""
    return uri[len("file://"):] if scheme_of(uri) == "file" else uri


def absolute(uri: str) -> str:
    """A remote URI as it is; a local one as an absolute path (``~`` expanded, ``file://`` dropped),
    for processes that do not share the caller's working directory (Ray jobs, Serve replicas)."""
    return uri if is_remote(uri) else os.path.abspath(os.path.expanduser(local_path(uri)))


def absolute_paths(cfg: Config) -> Config:
    """``cfg`` with its local data dir, shards root and Milvus Lite file as absolute paths (remote
    URIs and Milvus servers as they are): Ray jobs and Serve replicas run elsewhere than the
    caller's working directory."""
    over: dict[str, str] = {"data_dir": absolute(cfg.data_dir)}
    if cfg.shards_dir:
        over["shards_dir"] = absolute(cfg.shards_dir)
    if cfg.milvus_uri and is_lite_uri(cfg.milvus_uri):
        over["milvus_uri"] = absolute(cfg.milvus_uri)
    return dataclasses.replace(cfg, **over)


def storage_options(endpoint: str = "") -> dict[str, Any]:
    """s3fs options: an explicit endpoint (e.g. a local S3) or the standard AWS env/config chain."""
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL", "")
    return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}


def filesystem(uri: str, endpoint: str = ""):
    """The fsspec file system of a remote ``uri`` (s3 gets ``storage_options(endpoint)``).

    fsspec caches instances by their arguments, so every caller asking for one store shares one."""
    import fsspec  # imported here: a caller that only reads local files never needs it

    proto = scheme_of(uri)
    return fsspec.filesystem(proto, **(storage_options(endpoint) if proto == "s3" else {}))
