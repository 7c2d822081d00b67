"""Read and write copy-localisation CSVs (truth and predictions share one format, in two layouts).

Two column layouts, told apart by the header alone (``detect_layout``, the one place that decides):

* ``astradup``: ``query_id,query_segment,source_id,source_segment`` plus ``score`` for
  predictions; segments are ``"start-end"`` in seconds.
* ``vsc``: the layout of Meta's VSC22 matching track (facebookresearch/vsc2022, ``vsc/metrics.py``
  ``Match``): ``query_id,ref_id,query_start,query_end,ref_start,ref_end`` plus ``score`` for
  predictions (its ground-truth files have none); one number per column. ``ref_id`` is read as
  ``source_id``, so both layouts give the same ``records.SegmentMatch`` and every metric treats
  them alike.

Truth files may carry more columns (``transform``...):
they are kept in ``SegmentMatch.extra`` because the per-transform report needs them, and a row
that cannot be parsed raises ``SegmentsCsvError`` naming file and line, since a silently skipped
truth row would bias every metric computed from the file.

Every way a file can be bad ends in that one error (the CLI prints it as one line, exit 2):
bytes that are not UTF-8, a field over ``MAX_FIELD_CHARS``, a line or record over
``MAX_RECORD_CHARS``, more than ``MAX_ROWS`` rows, malformed CSV quoting, and numbers that are not
finite or are longer than ``MAX_NUMBER_CHARS`` (a 400-digit bound used to parse as infinity and
turn every metric into nan). The limits keep memory and time bounded whatever the file holds.
"""
from __future__ import annotations

import contextlib
import csv
import math
import re
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, TextIO

from astradup.errors import MediaError
from astradup.records import SegmentMatch

REQUIRED = ("query_id", "query_segment", "source_id", "source_segment")
VSC_REQUIRED = ("query_id", "ref_id", "query_start", "query_end", "ref_start", "ref_end")
SCORE = "score"
LAYOUT_ASTRADUP = "astradup"
LAYOUT_VSC = "vsc"
LAYOUTS = {LAYOUT_ASTRADUP: REQUIRED, LAYOUT_VSC: VSC_REQUIRED}

MAX_FIELD_CHARS = 128 * 1024  # one field; ids and segments are short, so this only stops hostile files
MAX_RECORD_CHARS = 1 << 20  # one physical line, and one record (quoted fields may span lines)
MAX_ROWS = 5_000_000  # rows a file may hold (several times the largest benchmark's predictions)
MAX_NUMBER_CHARS = 24  # characters of one number: plenty for any float's repr, bounds float() work
MAX_SECONDS = 1e9  # a segment bound past ~31 years is a broken file, not a video

# Non-negative seconds: "12", "12.5", "12." ; the separator is the dash between the two numbers.
_SEGMENT = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*-\s*(\d+(?:\.\d*)?)\s*$")
# A plain decimal score, optionally with an exponent; no nan / inf / underscores.
_SCORE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
# A VSC22 time: non-negative seconds, plain decimal, optionally with an exponent (pandas writes 1e-05).
_TIME = re.compile(r"^\+?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


class SegmentsCsvError(MediaError):
    """A truth or prediction CSV that cannot be read: carries ``path``, ``line`` (1-based physical
    line, None when the file as a whole is at fault) and ``reason``; ``str()`` is one line,
    ``"<path>: line <n>: <reason>"``."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        super().__init__(path, reason if line is None else f"line {line}: {reason}")
        self.line = line


def _show(text: str, limit: int = 40) -> str:
    """A value quoted for an error message, cut short: the message stays one readable line."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def parse_segment(text: str) -> tuple[float, float]:
    """``"start-end"`` -> (start, end); raises ValueError with the reason."""
    m = _SEGMENT.match(text)
    if not m:
        raise ValueError(f"segment {_show(text)} is not 'start-end' in seconds")
    start, end = _seconds(m.group(1), text), _seconds(m.group(2), text)
    if end < start:
        raise ValueError(f"segment {_show(text)} ends before it starts")
    return start, end


def _seconds(num: str, text: str, what: str = "segment") -> float:
    """One bound of a segment as a finite float within ``MAX_SECONDS``; ValueError saying why not."""
    if len(num) > MAX_NUMBER_CHARS:
        raise ValueError(f"{what} {_show(text)}: a bound of {len(num)} characters is longer than "
                         f"{MAX_NUMBER_CHARS}")
    v = float(num)
    if not math.isfinite(v) or v > MAX_SECONDS:
        raise ValueError(f"{what} {_show(text)}: bound {_show(num)} is over {MAX_SECONDS:g} seconds")
    return v


def parse_bounds(start: str, end: str, what: str) -> tuple[float, float]:
    """Two VSC22 time columns (``what``: "query" or "ref") -> (start, end); ValueError saying why not."""
    out = []
    for col, raw in ((f"{what}_start", start.strip()), (f"{what}_end", end.strip())):
        if len(raw) > MAX_NUMBER_CHARS:
            raise ValueError(f"{col} of {len(raw)} characters is longer than {MAX_NUMBER_CHARS}")
        if not _TIME.match(raw):
            raise ValueError(f"{col} {_show(raw)} is not a non-negative number of seconds")
        out.append(_seconds(raw, raw, col))
    if out[1] < out[0]:
        raise ValueError(f"{what}_end {_show(end.strip())} is before {what}_start {_show(start.strip())}")
    return out[0], out[1]


def format_segment(start: float, end: float) -> str:
    return f"{_fmt_seconds(start)}-{_fmt_seconds(end)}"


def _fmt_seconds(x: float) -> str:
    # Up to 2 decimals, trailing zeros dropped, so whole-second truth stays "12-30".
    s = f"{x:.2f}".rstrip("0").rstrip(".")
    return s or "0"


def read_rows(path: str | Path) -> list[SegmentMatch]:
    """Parse a truth or prediction CSV; raises SegmentsCsvError(path, line, reason) on anything bad.

    The one reader for both files, so every check (strict UTF-8, field, record and row limits,
    finite bounded numbers) holds for truth and predictions alike."""
    p = str(path)
    try:
        f = open(p, "rb")
    except OSError as e:
        raise SegmentsCsvError(p, None, f"cannot open: {e.strerror or e}") from e
    with f:
        lines = _Lines(f, p)
        reader = csv.reader(lines)
        try:
            return _read_records(reader, lines, p)
        except csv.Error as e:  # bad quoting, a field over the csv module's own limit, NUL...
            raise SegmentsCsvError(p, lines.line, f"malformed CSV: {_csv_reason(e)}") from None
        except OSError as e:
            raise SegmentsCsvError(p, lines.line, f"cannot read: {e.strerror or e}") from None


def _csv_reason(e: csv.Error) -> str:
    msg = str(e)
    if "field larger than field limit" in msg:
        return f"a field is over {MAX_FIELD_CHARS // 1024} KiB"
    return msg


class _Lines:
    """The file's physical lines as strict-UTF-8 text, for ``csv.reader``.

    Reading bytes and decoding each line (instead of a text-mode file) puts a bad byte on its own
    line number, and ``readline`` with a cap keeps one line, and one record (``pending``, reset by
    the caller after each record), within ``MAX_RECORD_CHARS`` however the file is made.
    """

    def __init__(self, f: BinaryIO, path: str) -> None:
        self.f, self.path = f, path
        self.line = 0
        self.pending = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw = self.f.readline(MAX_RECORD_CHARS + 1)
        if not raw:
            raise StopIteration
        self.line += 1
        self.pending += len(raw)
        if len(raw) > MAX_RECORD_CHARS or self.pending > MAX_RECORD_CHARS:
            raise SegmentsCsvError(self.path, self.line, f"record longer than {MAX_RECORD_CHARS // 1024} KiB")
        try:
            text = raw.decode("utf-8")  # strict: a wrong byte is an error, never a silent U+FFFD
        except UnicodeDecodeError as e:
            raise SegmentsCsvError(self.path, self.line, f"not UTF-8: byte 0x{raw[e.start]:02x} at "
                                                         f"byte {e.start + 1} of the line") from None
        return text[1:] if self.line == 1 and text.startswith("\ufeff") else text


def detect_layout(names: list[str]) -> tuple[str | None, str]:
    """(layout, "") for a header holding every column of exactly one layout, else (None, reason).

    The one place a file's layout is decided: from the header only, so a file is never read
    half in one layout and half in another."""
    have = set(names)
    complete = [k for k, cols in LAYOUTS.items() if have.issuperset(cols)]
    if len(complete) == 1:
        return complete[0], ""
    if complete:
        return None, ("header has the columns of both layouts (astradup's query_segment/source_segment and "
                      "VSC22's ref_id/query_start...): keep one")
    missing = {k: [c for c in cols if c not in have] for k, cols in LAYOUTS.items()}
    return None, ("header has neither layout: astradup's lacks column(s) "
                  f"{', '.join(map(_show, missing[LAYOUT_ASTRADUP]))}; VSC22's lacks column(s) "
                  f"{', '.join(map(_show, missing[LAYOUT_VSC]))}")


def _read_records(reader: Iterator[list[str]], lines: _Lines, p: str) -> list[SegmentMatch]:
    header = _next_record(reader, lines, p)
    while header is not None and not any(c.strip() for c in header):
        header = _next_record(reader, lines, p)  # leading blank lines
    if header is None:
        raise SegmentsCsvError(p, None, f"empty file; expected a header with {','.join(REQUIRED)} "
                                        f"(or VSC22's {','.join(VSC_REQUIRED)})")
    names = [c.strip() for c in header]
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise SegmentsCsvError(p, lines.line, f"duplicate column(s) {', '.join(map(_show, dup))}")
    layout, why = detect_layout(names)
    if layout is None:
        raise SegmentsCsvError(p, lines.line, why)
    idx = {c: i for i, c in enumerate(names)}
    extra_cols = [c for c in names if c not in LAYOUTS[layout] and c != SCORE]
    rows: list[SegmentMatch] = []
    while (rec := _next_record(reader, lines, p)) is not None:
        if not any(c.strip() for c in rec):
            continue
        if len(rows) >= MAX_ROWS:
            raise SegmentsCsvError(p, lines.line, f"more than {MAX_ROWS} rows")
        try:
            rows.append(_parse_record(rec, names, idx, extra_cols, layout))
        except ValueError as e:
            raise SegmentsCsvError(p, lines.line, str(e)) from None
    return rows


def _next_record(reader: Iterator[list[str]], lines: _Lines, p: str) -> list[str] | None:
    """The next record, None at the end; a field over ``MAX_FIELD_CHARS`` is an error here too,
    whatever ``csv.field_size_limit`` the process runs with (it is global, others may raise it)."""
    rec = next(reader, None)
    lines.pending = 0
    if rec is not None:
        for i, c in enumerate(rec, 1):
            if len(c) > MAX_FIELD_CHARS:
                raise SegmentsCsvError(p, lines.line, f"field {i} is over {MAX_FIELD_CHARS // 1024} KiB "
                                                      f"({len(c)} characters)")
    return rec


def _parse_record(rec: list[str], names: list[str], idx: dict[str, int],
                  extra_cols: list[str], layout: str = LAYOUT_ASTRADUP) -> SegmentMatch:
    if len(rec) != len(names):
        raise ValueError(f"{len(rec)} fields, header has {len(names)}")
    source = "ref_id" if layout == LAYOUT_VSC else "source_id"
    qid, sid = rec[idx["query_id"]].strip(), rec[idx[source]].strip()
    if not qid or not sid:
        raise ValueError(f"empty query_id or {source}")
    if layout == LAYOUT_VSC:
        qs, qe = parse_bounds(rec[idx["query_start"]], rec[idx["query_end"]], "query")
        ss, se = parse_bounds(rec[idx["ref_start"]], rec[idx["ref_end"]], "ref")
    else:
        qs, qe = parse_segment(rec[idx["query_segment"]])
        ss, se = parse_segment(rec[idx["source_segment"]])
    score = 1.0
    if SCORE in idx:
        raw = rec[idx[SCORE]].strip()
        if len(raw) > MAX_NUMBER_CHARS:
            raise ValueError(f"score of {len(raw)} characters is longer than {MAX_NUMBER_CHARS}")
        if not _SCORE.match(raw):
            raise ValueError(f"score {_show(raw)} is not a number")
        score = float(raw)
        if not math.isfinite(score):
            raise ValueError(f"score {_show(raw)} is not finite")
    extra = {c: rec[idx[c]].strip() for c in extra_cols}
    return SegmentMatch(qid, qs, qe, sid, ss, se, score, extra=extra)


def write_rows(path: str | Path | TextIO, rows: Iterable[SegmentMatch], with_score: bool = True,
               layout: str = LAYOUT_ASTRADUP) -> None:
    """Write rows in a layout ``read_rows`` reads (to a path or an open text stream); extra columns
    follow, in first-seen order.

    ``with_score=False`` writes a truth file (no score column). ``layout="vsc"`` writes VSC22's
    columns (``source_id`` as ``ref_id``), which vsc2022's ``matching_eval.py`` reads as well. Both
    layouts round numbers alike, so one set of rows scores the same in either.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    rows = list(rows)
    extra_cols: list[str] = []
    for r in rows:
        for k in r.extra:
            if k not in extra_cols:
                extra_cols.append(k)
    header = list(LAYOUTS[layout]) + ([SCORE] if with_score else []) + extra_cols
    with contextlib.ExitStack() as stack:
        f = path if hasattr(path, "write") else stack.enter_context(
            open(path, "w", newline="", encoding="utf-8"))
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            if layout == LAYOUT_VSC:
                rec = [r.query_id, r.source_id, _fmt_seconds(r.q_start), _fmt_seconds(r.q_end),
                       _fmt_seconds(r.s_start), _fmt_seconds(r.s_end)]
            else:
                rec = [r.query_id, format_segment(r.q_start, r.q_end),
                       r.source_id, format_segment(r.s_start, r.s_end)]
            if with_score:
                rec.append(f"{r.score:.4f}")
            rec.extend(str(r.extra.get(c, "")) for c in extra_cols)
            w.writerow(rec)
