"""Read and write copy-localisation CSVs (truth and predictions share one format).

Columns: ``query_id,query_segment,source_id,source_segment`` plus ``score`` for predictions;
segments are ``"start-end"`` in seconds. Truth files may carry more columns (``transform``...):
they are kept in ``SegmentRow.extra`` because the per-transform report needs them, and a row
that cannot be parsed raises ``MediaError`` naming file and line, since a silently skipped truth
row would bias every metric computed from the file.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from astradup.errors import MediaError

REQUIRED = ("query_id", "query_segment", "source_id", "source_segment")
SCORE = "score"

# Non-negative seconds: "12", "12.5", "12." ; the separator is the dash between the two numbers.
_SEGMENT = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*-\s*(\d+(?:\.\d*)?)\s*$")


@dataclass(frozen=True)
class SegmentRow:
    """One matched (query segment, source segment) pair; ``score`` is 1.0 for truth rows."""

    query_id: str
    q_start: float
    q_end: float
    source_id: str
    s_start: float
    s_end: float
    score: float = 1.0
    # Extra CSV columns as strings. Excluded from the hash (a dict is unhashable) but compared,
    # so a round trip that lost a column would not compare equal.
    extra: dict[str, str] = field(default_factory=dict, hash=False)


def parse_segment(text: str) -> tuple[float, float]:
    """``"start-end"`` -> (start, end); raises ValueError with the reason."""
    m = _SEGMENT.match(text)
    if not m:
        raise ValueError(f"segment {text!r} is not 'start-end' in seconds")
    start, end = float(m.group(1)), float(m.group(2))
    if end < start:
        raise ValueError(f"segment {text!r} ends before it starts")
    return start, end


def format_segment(start: float, end: float) -> str:
    return f"{_fmt_seconds(start)}-{_fmt_seconds(end)}"


def _fmt_seconds(x: float) -> str:
    # Up to 2 decimals, trailing zeros dropped, so whole-second truth stays "12-30".
    s = f"{x:.2f}".rstrip("0").rstrip(".")
    return s or "0"


def read_rows(path: str | Path) -> list[SegmentRow]:
    """Parse a truth or prediction CSV; raises MediaError(path, "line N: ...") on a bad row."""
    p = str(path)
    try:
        f = open(p, newline="", encoding="utf-8")
    except OSError as e:
        raise MediaError(p, f"cannot open: {e.strerror or e}") from e
    with f:
        reader = csv.reader(f)
        header = next(reader, None)
        while header is not None and not any(c.strip() for c in header):
            header = next(reader, None)  # leading blank lines
        if header is None:
            raise MediaError(p, f"empty file; expected a header with {','.join(REQUIRED)}")
        names = [c.strip() for c in header]
        missing = [c for c in REQUIRED if c not in names]
        if missing:
            raise MediaError(p, f"line {reader.line_num}: header lacks column(s) {', '.join(missing)}")
        dup = sorted({c for c in names if names.count(c) > 1})
        if dup:
            raise MediaError(p, f"line {reader.line_num}: duplicate column(s) {', '.join(dup)}")
        idx = {c: i for i, c in enumerate(names)}
        extra_cols = [c for c in names if c not in REQUIRED and c != SCORE]
        rows: list[SegmentRow] = []
        for rec in reader:
            if not any(c.strip() for c in rec):
                continue
            try:
                rows.append(_parse_record(rec, names, idx, extra_cols))
            except ValueError as e:
                raise MediaError(p, f"line {reader.line_num}: {e}") from None
    return rows


def _parse_record(rec: list[str], names: list[str], idx: dict[str, int],
                  extra_cols: list[str]) -> SegmentRow:
    if len(rec) != len(names):
        raise ValueError(f"{len(rec)} fields, header has {len(names)}")
    qid, sid = rec[idx["query_id"]].strip(), rec[idx["source_id"]].strip()
    if not qid or not sid:
        raise ValueError("empty query_id or source_id")
    qs, qe = parse_segment(rec[idx["query_segment"]])
    ss, se = parse_segment(rec[idx["source_segment"]])
    score = 1.0
    if SCORE in idx:
        raw = rec[idx[SCORE]].strip()
        try:
            score = float(raw)
        except ValueError:
            raise ValueError(f"score {raw!r} is not a number") from None
        if not math.isfinite(score):
            raise ValueError(f"score {raw!r} is not finite")
    extra = {c: rec[idx[c]].strip() for c in extra_cols}
    return SegmentRow(qid, qs, qe, sid, ss, se, score, extra)


def write_rows(path: str | Path, rows: Iterable[SegmentRow], with_score: bool = True) -> None:
    """Write rows in the format ``read_rows`` reads; extra columns follow, in first-seen order.

    ``with_score=False`` writes a truth file (no score column).
    """
    rows = list(rows)
    extra_cols: list[str] = []
    for r in rows:
        for k in r.extra:
            if k not in extra_cols:
                extra_cols.append(k)
    header = list(REQUIRED) + ([SCORE] if with_score else []) + extra_cols
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            rec = [r.query_id, format_segment(r.q_start, r.q_end),
                   r.source_id, format_segment(r.s_start, r.s_end)]
            if with_score:
                rec.append(f"{r.score:.4f}")
            rec.extend(str(r.extra.get(c, "")) for c in extra_cols)
            w.writerow(rec)
