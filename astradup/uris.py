"""``s3://bucket/key`` URIs a client names, and which of them the service may read.

The HTTP service reads query objects with its own S3 credentials, which usually reach more than
the corpus (the shards bucket, other teams' buckets). So a client-given URI is read only when it
lies inside an allow-list of ``s3://bucket[/prefix]`` entries (``search.allowed_uris``; empty =
the buckets the index's own status records came from), and every refusal about *where* (outside
the list, no such object, no permission) reads the same, so the answers cannot be used to map
what exists in buckets the client may not read.

Matching is on normalised path segments, never on raw string prefixes:

* a URI whose key has an empty segment (``//``), a ``.`` or ``..`` segment, a trailing ``/``, a
  control character or s3fs's ``?versionId=`` suffix is malformed (HTTP clients and S3 gateways
  may collapse ``a/../b`` or ``a//b`` into another key than the one the allow-list saw);
* ``s3://bucket/pre`` allows ``s3://bucket/pre/...`` (and the key ``pre`` itself), not
  ``s3://bucket/prefix-other``; ``s3://bucket`` (or ``s3://bucket/``) allows the whole bucket.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

# S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a
# letter or digit (the AWS rules, minus the IP-address form, which no bucket can have).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
MAX_URI_CHARS = 1100  # an S3 key is at most 1024 bytes; the bucket and scheme add at most 69


class BadUri(ValueError):
    """A URI that is not a well-formed ``s3://bucket/key`` (a 400: it says nothing about storage)."""


def split_s3(uri: str, *, prefix: bool = False) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``, or BadUri naming what is wrong.

    ``prefix=True`` reads an allow-list entry: the key may be empty (the whole bucket) and a
    trailing ``/`` is dropped. Otherwise the key must name one object.
    """
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise BadUri("must be s3://bucket/key (local paths are never read: upload the file)")
    if len(uri) > MAX_URI_CHARS:
        raise BadUri(f"longer than {MAX_URI_CHARS} characters")
    if _CONTROL_RE.search(uri):
        raise BadUri("contains control characters")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise BadUri("bucket must be 3-63 lowercase letters, digits, dots or hyphens")
    if prefix:
        key = key[:-1] if key.endswith("/") else key
        if not key:
            return bucket, ""
    elif not key:
        raise BadUri("must name an object: s3://bucket/key")
    if "?versionId=" in key:
        raise BadUri("must not carry a ?versionId= suffix")
    if any(seg in ("", ".", "..") for seg in key.split("/")):
        raise BadUri("key must not have empty, '.' or '..' path segments (no '//', no trailing '/')")
    return bucket, key


@dataclass(frozen=True)
class AllowList:
    """Bucket -> allowed key prefixes ("" = the whole bucket), matched on whole path segments."""

    entries: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def parse(cls, uris: Iterable[str]) -> "AllowList":
        """From ``s3://bucket[/prefix]`` entries; BadUri on a malformed one."""
        return cls(frozenset(split_s3(u, prefix=True) for u in uris))

    @classmethod
    def from_indexed(cls, uris: Iterable[str]) -> "AllowList":
        """The buckets of the indexed ``s3://`` URIs (objects or bare ``s3://bucket``: the default
        list); local paths and malformed URIs give nothing."""
        out = set()
        for u in uris:
            try:
                out.add((split_s3(u, prefix=True)[0], ""))
            except BadUri:
                continue
        return cls(frozenset(out))

    def allows(self, bucket: str, key: str) -> bool:
        """Whether ``s3://bucket/key`` (already through :func:`split_s3`) lies inside an entry."""
        for b, p in self.entries:
            if b == bucket and (p == "" or key == p or key.startswith(p + "/")):
                return True
        return False

    def describe(self) -> list[str]:
        return sorted(f"s3://{b}/{p}" for b, p in self.entries)


_MILVUS_SERVER_SCHEMES = ("http://", "https://", "tcp://", "grpc://", "unix:")


def is_lite_uri(uri: str) -> bool:
    """A Milvus server URI has a scheme; anything else is a Milvus Lite path (one writing process)."""
    return not uri.lower().startswith(_MILVUS_SERVER_SCHEMES)
