"""HTTP byte ranges (RFC 9110 section 14), which a <video> element needs to seek without
downloading the whole file first."""
from __future__ import annotations

import re

_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class RangeNotSatisfiable(ValueError):
    """Answered 416 with ``Content-Range: bytes */size``."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive byte positions, or None to send the whole file.

    None also covers what a server may ignore: no header, a unit other than bytes, several ranges
    (answering those with the full body is allowed, and browsers only ask for one) and syntax
    it cannot read.
    """
    if not header or "," in header:
        return None
    m = _RANGE_RE.match(header)
    if not m:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(f"bytes -{n} of a {size}-byte file")
        return max(0, size - n), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None  # invalid range spec: ignored, per the RFC
    if start >= size:
        raise RangeNotSatisfiable(f"bytes {start}- of a {size}-byte file")
    return start, end
