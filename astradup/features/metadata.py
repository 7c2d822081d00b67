"""How much two videos' container metadata agree (the metadata itself is read by io/probe.py).

Metadata agreement is weak evidence on its own (many videos are 30 fps 16:9), which is why fusion
gives it a small weight; it mainly separates a trimmed or re-framed copy from an exact one.
"""
from __future__ import annotations

from typing import Any

from astradup.io.probe import finite_float


def _agreement(x: Any, y: Any) -> float | None:
    """min/max of two positive numbers: 1.0 when equal, falls as they diverge; None if unknown."""
    fx, fy = finite_float(x), finite_float(y)
    if fx is None or fy is None or fx <= 0 or fy <= 0:
        return None
    return min(fx, fy) / max(fx, fy)


def metadata_similarity(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Mean agreement of duration, aspect ratio and fps; 0.0 if none can be compared.

    Only ratios are used so that a re-encode to another resolution or bitrate (the most common
    copy) still agrees fully; codecs and containers are deliberately ignored for the same reason.
    """
    def aspect(m: dict[str, Any]) -> float | None:
        w, h = finite_float(m.get("width")), finite_float(m.get("height"))
        return w / h if w and h and w > 0 and h > 0 else None

    parts = [
        _agreement(a.get("duration"), b.get("duration")),
        _agreement(aspect(a), aspect(b)),
        _agreement(a.get("fps"), b.get("fps")),
    ]
    known = [p for p in parts if p is not None]
    return float(sum(known) / len(known)) if known else 0.0
