"""The dedup job's pair rows: a match as one row of a Parquet part and back, in one schema that
old parts (written before a column existed) are read into."""
from __future__ import annotations

import json
from typing import Any

from astradup.records import AudioCopy, SegmentMatch, VideoMatch


def match_to_row(query_id: str, m: VideoMatch) -> dict[str, Any]:
    a, b = sorted((query_id, m.source_id))
    return {"a": a, "b": b, "query_id": query_id, "source_id": m.source_id, "source_uri": m.source_uri,
            "fused": float(m.fused), "confidence": float(m.confidence), "label": m.label, "review": bool(m.review),
            "scores": json.dumps({k: float(v) for k, v in m.scores.items()}), "notes": json.dumps(list(m.notes)),
            "segments": json.dumps([[s.query_id, float(s.q_start), float(s.q_end), s.source_id, float(s.s_start),
                                     float(s.s_end), float(s.score), list(s.modalities)] for s in m.segments]),
            "audio_copy": _audio_copy_json(m.audio_copy)}


def _audio_copy_json(a: AudioCopy | None) -> str | None:
    """[q_start, q_end, s_start, s_end, score], or None (a null cell) when the pair has no flag."""
    if a is None:
        return None
    return json.dumps([float(a.q_start), float(a.q_end), float(a.s_start), float(a.s_end), float(a.score)])


def _audio_copy_of(r: dict[str, Any], query_id: str, source_id: str) -> AudioCopy | None:
    """The flag of a pair row; parts written before the flag existed have no such column: no flag."""
    cell = r.get("audio_copy")
    if not cell:
        return None
    qs, qe, ss, se, sc = json.loads(cell)
    return AudioCopy(query_id, qs, qe, source_id, ss, se, sc, ("audio",))


def row_to_match(r: dict[str, Any]) -> VideoMatch:
    segs = tuple(SegmentMatch(q, qs, qe, s, ss, se, sc, tuple(mod))
                 for q, qs, qe, s, ss, se, sc, mod in json.loads(r["segments"]))
    return VideoMatch(source_id=r["source_id"], source_uri=r["source_uri"], scores=json.loads(r["scores"]),
                      fused=float(r["fused"]), confidence=float(r["confidence"]), label=r["label"],
                      review=bool(r["review"]), notes=tuple(json.loads(r["notes"])), segments=segs,
                      audio_copy=_audio_copy_of(r, r["query_id"], r["source_id"]))


def pair_schema():
    import pyarrow as pa

    return pa.schema([("a", pa.string()), ("b", pa.string()), ("query_id", pa.string()),
                      ("source_id", pa.string()), ("source_uri", pa.string()), ("fused", pa.float64()),
                      ("confidence", pa.float64()), ("label", pa.string()), ("review", pa.bool_()),
                      ("scores", pa.string()), ("notes", pa.string()), ("segments", pa.string()),
                      ("audio_copy", pa.string())])


def with_all_columns(t):
    """A part as the current schema has it: parts written before a column existed (audio_copy) get
    it as nulls, so old and new parts concatenate and an old pair reads as having no flag."""
    import pyarrow as pa

    schema = pair_schema()
    for f in schema:
        if f.name not in t.column_names:
            t = t.append_column(f, pa.nulls(t.num_rows, type=f.type))
    return t.select([f.name for f in schema])
