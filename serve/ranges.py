"""HTTP byte ranges (RFC 9110 section 14), which a <video> element needs to seek without
downloading the whole file first."""
from __future__ import annotations

import re

_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


# Positions longer than this are past any file (2**63 has 19 digits); int() of a 5,000-digit
# number would raise (Python's 4,300-digit guard) or waste CPU, so such a number is read as BEYOND.
_MAX_DIGITS = 18
BEYOND = 10 ** _MAX_DIGITS


def _position(digits: str) -> int:
    return int(digits) if len(digits) <= _MAX_DIGITS else BEYOND


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
        n = _position(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(f"bytes -{n} of a {size}-byte file")
        return max(0, size - n), size - 1
    start = _position(first)
    end = size - 1 if last == "" else min(_position(last), size - 1)
    if last != "" and _position(last) < start:
        return None  # invalid range spec: ignored, per the RFC
    if start >= size:
        shown = first if len(first) <= _MAX_DIGITS else f"{first[:_MAX_DIGITS]}... ({len(first)} digits)"
        raise RangeNotSatisfiable(f"bytes {shown}- of a {size}-byte file")
    return start, end
