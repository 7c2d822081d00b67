"""Where videos come from: local files/folders or s3:// prefixes (through fsspec/s3fs).

Listing returns plain (uri, size) pairs; ids are content hashes computed while decoding, so a
listing never has to read the bytes.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".flv",
                    ".wmv", ".ts", ".3gp", ".ogv"}


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def storage_options(endpoint: str = "") -> dict:
    """s3fs options: an explicit endpoint (e.g. a local S3) or the standard AWS env/config chain."""
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL", "")
    return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}


def _fs(uri: str, endpoint: str = ""):
    import fsspec

    proto = uri.split("://", 1)[0]
    return fsspec.filesystem(proto, **(storage_options(endpoint) if proto == "s3" else {}))


def list_videos(inputs: list[str], endpoint: str = "") -> list[tuple[str, int]]:
    """Files named explicitly are always listed (a bad one then gets a clear error); folders and
    prefixes are walked for video extensions only, sorted for a deterministic order."""
    out: list[tuple[str, int]] = []
    for item in inputs:
        if is_remote(item):
            fs = _fs(item, endpoint)
            fs.invalidate_cache()  # instances are shared and s3fs caches listings: see new objects
            proto = item.split("://", 1)[0]
            if fs.isfile(item):
                out.append((item, int(fs.size(item))))
                continue
            # detail=True takes sizes from the listing pages themselves: no HEAD request per object.
            for path, info in sorted(fs.find(item, detail=True).items()):
                if info.get("type", "file") == "file" and Path(path).suffix.lower() in VIDEO_EXTENSIONS:
                    out.append((f"{proto}://{path}", int(info.get("size") or 0)))
            continue
        p = Path(item.removeprefix("file://")).expanduser()
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS:
                    out.append((str(f.resolve()), f.stat().st_size))
        elif p.exists():
            out.append((str(p.resolve()), p.stat().st_size))
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    seen: set[str] = set()
    return [x for x in out if not (x[0] in seen or seen.add(x[0]))]


@contextlib.contextmanager
def local_copy(uri: str, endpoint: str = "") -> Iterator[str]:
    """A local path for decoders that need one; remote objects are streamed to a temp file."""
    if not is_remote(uri):
        yield uri.removeprefix("file://")
        return
    suffix = Path(uri).suffix
    fd, tmp = tempfile.mkstemp(prefix="astradup-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as dst, _fs(uri, endpoint).open(uri, "rb") as src:
            shutil.copyfileobj(src, dst, 1 << 20)
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
