"""The report's CSV: one row per duplicate pair, for spreadsheets and scripts."""
from __future__ import annotations

import csv
import io
from typing import Any

from astradup.report.data import ReportData

CSV_FIELDS = ("group_id", "video_a_id", "video_a_uri", "video_b_id", "video_b_uri", "fused", "label",
              "confidence", "review", "decision", "visual", "audio", "metadata", "notes", "interval_query_id",
              "query_intervals", "source_intervals", "interval_scores")


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


def csv_rows(data: ReportData) -> list[dict[str, Any]]:
    """One row per pair. Intervals are ``start-end`` seconds joined by ``;``, the i-th query interval
    copied from the i-th source interval; ``interval_query_id`` says which of a/b is the query axis."""
    rows = []
    for p in data.pairs:
        m, segs = p.match, p.match.segments
        rows.append({
            "group_id": p.group_id, "video_a_id": p.a, "video_a_uri": data.uris.get(p.a, ""),
            "video_b_id": p.b, "video_b_uri": data.uris.get(p.b, ""), "fused": _fmt(m.fused), "label": m.label,
            "confidence": _fmt(m.confidence), "review": str(bool(m.review)).lower(),
            "decision": m.decision or "",
            "visual": _fmt(m.scores.get("visual")), "audio": _fmt(m.scores.get("audio")),
            "metadata": _fmt(m.scores.get("metadata")), "notes": "; ".join(m.notes),
            "interval_query_id": p.query_id,
            "query_intervals": ";".join(f"{s.q_start:g}-{s.q_end:g}" for s in segs),
            "source_intervals": ";".join(f"{s.s_start:g}-{s.s_end:g}" for s in segs),
            "interval_scores": ";".join(f"{s.score:.3f}" for s in segs),
        })
    return rows


def csv_text(data: ReportData) -> str:
    """The whole CSV, header first."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS))
    w.writeheader()
    w.writerows(csv_rows(data))
    return buf.getvalue()
