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

from astradup.io.remote import filesystem, is_remote, local_path, scheme_of

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".flv",
                    ".wmv", ".ts", ".3gp", ".ogv"}


def list_videos(inputs: list[str], endpoint: str = "") -> list[tuple[str, int]]:
    """Files named explicitly are always listed (a bad one then gets a clear error); folders and
    prefixes are walked for video extensions only, sorted for a deterministic order."""
    out: list[tuple[str, int]] = []
    for item in inputs:
        if is_remote(item):
            fs = filesystem(item, endpoint)
            fs.invalidate_cache()  # instances are shared and s3fs caches listings: see new objects
            proto = scheme_of(item)
            if fs.isfile(item):
                out.append((item, int(fs.size(item))))
                continue
            # detail=True takes sizes from the listing pages themselves: no HEAD request per object.
            for path, info in sorted(fs.find(item, detail=True).items()):
                if info.get("type", "file") == "file" and Path(path).suffix.lower() in VIDEO_EXTENSIONS:
                    out.append((f"{proto}://{path}", int(info.get("size") or 0)))
            continue
        p = Path(local_path(item)).expanduser()
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
        yield local_path(uri)
        return
    suffix = Path(uri).suffix
    fd, tmp = tempfile.mkstemp(prefix="astradup-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as dst, filesystem(uri, endpoint).open(uri, "rb") as src:
            shutil.copyfileobj(src, dst, 1 << 20)
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
