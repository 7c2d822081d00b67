"""Records <-> shard rows: a VideoFeatures as a features row and back, status rows, key columns checked.

The one codec of the shard format (store/shard_schema.py). Decoding is where a damaged or foreign
file shows: every check raises ValueError (or the pyarrow error the data causes), which the
readers' quarantine (store/shard_quarantine.py) turns into a skipped shard, never a crash.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from astradup.plain import plain
from astradup.records import PDQ_BYTES, STATUS_FAILED, STATUS_OK, VideoFeatures
from astradup.store.compact import (CODES_DIM, audio_mfcc_part, dequantise_rows, quantise_rows,
                                    rebuild_audio_vectors)
from astradup.store.shard_schema import FEATURES_SCHEMA, META_COLUMNS, PHASH_BYTES, STATUS_SCHEMA, STATUSES, conform

_INT32_MAX = 2**31 - 1

def _split_meta(meta: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Meta keys with a column go to that column when they fit it; everything else to JSON.

    A value that does not fit (say ``fps`` given as the string "30000/1001") stays in the JSON,
    so no information is lost or coerced into something it was not.
    """
    cols: dict[str, Any] = {}
    rest = dict(meta)
    for name, py, accepted in META_COLUMNS:
        if name not in rest:
            continue
        v = plain(rest[name])
        if isinstance(v, bool) or not isinstance(v, accepted):
            continue
        if py is int and name != "size" and not -_INT32_MAX <= v <= _INT32_MAX:
            continue
        cols[name] = py(v)
        del rest[name]
    return cols, json.dumps(plain(rest), sort_keys=True)


def feature_row(f: VideoFeatures) -> dict[str, Any]:
    if f.status not in (STATUS_OK, STATUS_FAILED):
        raise ValueError(f"{f.video_id}: features status must be ok or failed, got {f.status!r}")
    emb = np.ascontiguousarray(f.embeddings, dtype=np.float32)
    ts = np.ascontiguousarray(f.timestamps, dtype=np.float32).reshape(-1)
    ph = np.ascontiguousarray(f.phash, dtype=np.uint8)
    aw = np.ascontiguousarray(f.audio_windows, dtype=np.float32)
    av = np.ascontiguousarray(f.audio_vectors, dtype=np.float32)
    if emb.ndim != 2 or len(emb) != len(ts):
        raise ValueError(f"{f.video_id}: embeddings {emb.shape} do not match {len(ts)} timestamps")
    if ph.size and (ph.ndim != 2 or ph.shape[1] != PHASH_BYTES or len(ph) != len(ts)):
        raise ValueError(f"{f.video_id}: phash {ph.shape} is not [{len(ts)}, {PHASH_BYTES}]")
    pdq = np.ascontiguousarray(f.pdq, dtype=np.uint8)
    pdq_q = np.ascontiguousarray(f.pdq_quality, dtype=np.uint8).reshape(-1)
    if pdq.size and (pdq.ndim != 2 or pdq.shape[1] != PDQ_BYTES or len(pdq) != len(ts) or len(pdq_q) != len(ts)):
        raise ValueError(f"{f.video_id}: pdq {pdq.shape} / quality {pdq_q.shape} are not [{len(ts)}, {PDQ_BYTES}] / "
                         f"[{len(ts)}]")
    if aw.size and (aw.ndim != 2 or aw.shape[1] != 2):
        raise ValueError(f"{f.video_id}: audio_windows {aw.shape} is not [W, 2]")
    if av.ndim != 2 or len(av) != len(aw.reshape(-1, 2)):
        raise ValueError(f"{f.video_id}: audio_vectors {av.shape} do not match audio_windows {aw.shape}")
    cols, meta_json = _split_meta(f.meta)
    row = {name: None for name, _, _ in META_COLUMNS}
    row.update(cols)
    row.update(
        video_id=f.video_id, uri=f.uri, status=f.status, error=f.error, meta_json=meta_json,
        timestamps=ts, emb_dim=emb.shape[1], embeddings=None, emb_q=quantise_rows(emb).tobytes(),
        phash=ph.tobytes(), audio_windows=aw.reshape(-1), audio_dim=av.shape[1],
        **_audio_columns(f, aw, av),
        chromaprint=np.ascontiguousarray(f.chromaprint, dtype=np.uint32).reshape(-1),
        chromaprint_hz=float(f.chromaprint_hz),
        pdq=pdq.tobytes() if pdq.size else None, pdq_quality=pdq_q.tobytes() if pdq.size else None,
    )
    return row


def _audio_columns(f: VideoFeatures, windows: np.ndarray, vectors: np.ndarray) -> dict[str, Any]:
    """Layout 2 (MFCC part only) when rebuilding from the Chromaprint codes gives the vectors back,
    else the full vectors: records built some other way (tests, other audio embedders) round-trip
    unchanged, and a change to the audio features can never silently corrupt stored ones."""
    if len(vectors) and vectors.shape[1] > CODES_DIM:
        part = audio_mfcc_part(vectors)
        back = rebuild_audio_vectors(f.chromaprint, f.chromaprint_hz, windows, part)
        if back.shape == vectors.shape and float(np.abs(back - vectors).max()) < 2e-3:
            return {"audio_vectors": None, "audio_mfcc": part.reshape(-1)}
    return {"audio_vectors": vectors.reshape(-1), "audio_mfcc": None}


def _list_column(table: pa.Table, name: str, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, values) of a list column, so rows slice out of one numpy buffer."""
    arr = table.column(name).combine_chunks()
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy(zero_copy_only=False)
    return offsets, values.astype(dtype, copy=False)


def _matrix(flat: np.ndarray, width: int) -> np.ndarray:
    """Flat row-major values -> an owned [n, width] array (width 0 gives [0, 0])."""
    rows = len(flat) // width if width else 0
    if rows * width != len(flat):
        raise ValueError(f"corrupt shard row: {len(flat)} values do not fill rows of width {width}")
    return flat.reshape(rows, width).copy()


def rows_to_features(table: pa.Table, rows: list[int] | None = None) -> list[VideoFeatures]:
    """Arrow rows (all, or the given row numbers) -> records.

    Arrays are copied so callers get writeable arrays that do not pin the scanned table;
    selecting rows here is much cheaper than ``Table.take`` on large list columns.
    """
    if table.num_rows == 0 or rows == []:
        return []
    plain = {c: table.column(c).to_pylist() for c in (
        "video_id", "uri", "status", "error", "meta_json", "emb_dim", "audio_dim", "chromaprint_hz",
        *(name for name, _, _ in META_COLUMNS))}
    ts_o, ts_v = _list_column(table, "timestamps", np.float32)
    em_o, em_v = _list_column(table, "embeddings", np.float32)
    emb_q = table.column("emb_q").to_pylist()
    aw_o, aw_v = _list_column(table, "audio_windows", np.float32)
    av_o, av_v = _list_column(table, "audio_vectors", np.float32)
    am_o, am_v = _list_column(table, "audio_mfcc", np.float16)
    cp_o, cp_v = _list_column(table, "chromaprint", np.uint32)
    phash = table.column("phash").to_pylist()
    pdq, pdq_q = table.column("pdq").to_pylist(), table.column("pdq_quality").to_pylist()
    out = []
    for i in (range(table.num_rows) if rows is None else rows):
        meta = json.loads(plain["meta_json"][i] or "{}")
        for name, _, _ in META_COLUMNS:
            if plain[name][i] is not None:
                meta[name] = plain[name][i]
        d, da = int(plain["emb_dim"][i] or 0), int(plain["audio_dim"][i] or 0)
        if emb_q[i] is not None or em_o[i + 1] == em_o[i]:  # layout 2 (or no frames at all)
            emb = dequantise_rows(_matrix(np.frombuffer(emb_q[i] or b"", np.int8), d))
        else:
            emb = _matrix(em_v[em_o[i]:em_o[i + 1]], d)
        windows = _matrix(aw_v[aw_o[i]:aw_o[i + 1]], 2)
        chroma = cp_v[cp_o[i]:cp_o[i + 1]].copy()
        hz = float(plain["chromaprint_hz"][i] or 0.0)
        if av_o[i + 1] > av_o[i] or len(windows) == 0:  # layout 1, or no audio windows
            audio_vectors = _matrix(av_v[av_o[i]:av_o[i + 1]], da)
        else:
            audio_vectors = rebuild_audio_vectors(
                chroma, hz, windows, _matrix(am_v[am_o[i]:am_o[i + 1]], da - CODES_DIM))
        out.append(VideoFeatures(
            video_id=plain["video_id"][i], uri=plain["uri"][i] or "",
            timestamps=ts_v[ts_o[i]:ts_o[i + 1]].copy(),
            embeddings=emb,
            phash=_matrix(np.frombuffer(phash[i] or b"", np.uint8), PHASH_BYTES),
            audio_windows=windows,
            audio_vectors=audio_vectors,
            chromaprint=chroma,
            chromaprint_hz=hz,
            meta=meta, status=plain["status"][i], error=plain["error"][i] or "",
            **_pdq_columns(pdq[i], pdq_q[i]),
        ))
    return out


def _pdq_columns(hashes: bytes | None, quality: bytes | None) -> dict[str, np.ndarray]:
    """The record's PDQ arrays from its two cells; null cells (a shard older than PDQ) read as missing."""
    h = _matrix(np.frombuffer(hashes or b"", np.uint8), PDQ_BYTES)
    q = np.frombuffer(quality or b"", np.uint8).copy()
    if len(q) != len(h):
        raise ValueError(f"corrupt shard row: {len(h)} PDQ hashes but {len(q)} quality values")
    return {"pdq": h, "pdq_quality": q}


def features_status_rows(batch: list[VideoFeatures], us: int) -> list[dict[str, Any]]:
    """The status row of each record of a features shard stamped ``us``."""
    return [{
        "video_id": f.video_id, "uri": f.uri, "status": f.status, "error": f.error,
        "size": _as_int(f.meta.get("size")), "duration": _as_float(f.meta.get("duration")),
        "at": us,
    } for f in batch]


def status_rows(rows: list[dict], now: int) -> list[dict[str, Any]]:
    """Status rows as STATUS_SCHEMA holds them; ``at`` defaults to ``now`` and may be a datetime
    (naive = UTC) or UTC epoch microseconds. A row without an id or with an unknown status is refused."""
    clean = []
    for r in rows:
        if r.get("status") not in STATUSES:
            raise ValueError(f"{r.get('video_id')}: status must be one of {STATUSES}, got {r.get('status')!r}")
        if not r.get("video_id"):
            raise ValueError(f"status row without video_id: {r!r}")
        at = r.get("at", now)
        if isinstance(at, datetime):
            if at.tzinfo is None:  # naive means UTC here, never the host's local time
                at = at.replace(tzinfo=timezone.utc)
            at = round(at.timestamp() * 1_000_000)
        clean.append({"video_id": r["video_id"], "uri": r.get("uri") or "", "status": r["status"],
                      "error": r.get("error") or "", "size": _as_int(r.get("size")),
                      "duration": _as_float(r.get("duration")), "at": int(at)})
    return clean


def feature_keys(t: pa.Table) -> tuple[list[str], list[str], list[int]]:
    """(video_ids, statuses, indexed_at us) of a features shard's key columns.

    Raises ValueError when they are not what ``write_features`` writes (a null id or time, an
    unknown status, a column of another type): such a file is not one of ours, or is damaged."""
    ids = t.column("video_id")
    stat = t.column("status")
    if not pa.types.is_string(ids.type) or not pa.types.is_string(stat.type):
        raise ValueError(f"video_id / status columns are {ids.type} / {stat.type}, not strings")
    if not pa.types.is_timestamp(t.column("indexed_at").type):
        raise ValueError(f"indexed_at column is {t.column('indexed_at').type}, not a timestamp")
    ats = pc.cast(t.column("indexed_at"), pa.int64())
    if ids.null_count or ats.null_count:
        raise ValueError("null video_id or indexed_at")
    vids, sts = ids.to_pylist(), stat.to_pylist()
    if not set(sts) <= {STATUS_OK, STATUS_FAILED}:
        raise ValueError(f"unknown features status in {sorted(map(str, set(sts)))[:5]}")
    return vids, sts, ats.to_pylist()


def shard_keys(pf: pq.ParquetFile) -> tuple[list[str], list[str], list[int], list[int]]:
    """(video_ids, statuses, indexed_at us, rows per row group) of a features shard: what the
    catalog index needs of it, from the key columns alone."""
    vids, sts, ats = feature_keys(pf.read(columns=["video_id", "status", "indexed_at"]))
    md = pf.metadata
    return vids, sts, ats, [md.row_group(i).num_rows for i in range(md.num_row_groups)]


def read_rows(pf: pq.ParquetFile, starts: np.ndarray, rows: list[tuple[int, str]],
              columns: Iterable[str] | None = None) -> dict[str, VideoFeatures]:
    """The records at the given (row, video_id) pairs of an indexed features shard, reading only
    the row groups that hold them (``starts``: each group's first row when it was indexed).

    ``columns``: read only these (plus the key columns and timestamps); the others come back empty.
    Raises ValueError when the shard no longer matches its index (groups or ids moved)."""
    md = pf.metadata
    if len(starts) != md.num_row_groups:
        raise ValueError(f"row groups changed since the shard was indexed ({md.num_row_groups})")
    rows = sorted(rows)
    groups = sorted({int(np.searchsorted(starts, r, side="right")) - 1 for r, _ in rows})
    sizes = [md.row_group(g).num_rows for g in groups]
    offset = dict(zip(groups, np.concatenate([[0], np.cumsum(sizes)])[:-1].tolist()))
    present = set(pf.schema_arrow.names)
    if columns is not None:
        present &= {"video_id", "uri", "status", "indexed_at", "timestamps", *columns}
    table = conform(pf.read_row_groups(groups, columns=[c for c in FEATURES_SCHEMA.names if c in present]))
    ids = table.column("video_id")
    pos = []
    for r, vid in rows:
        g = int(np.searchsorted(starts, r, side="right")) - 1
        p = offset[g] + r - int(starts[g])
        if p >= table.num_rows or ids[p].as_py() != vid:
            raise ValueError(f"row {r} is not {vid}: the shard changed since it was indexed")
        pos.append(p)
    return {f.video_id: f for f in rows_to_features(table, pos)}


def status_table(t: pa.Table) -> pa.Table:
    """A status shard's rows (``at`` as UTC epoch microseconds), checked like ``feature_keys``."""
    t = t.select(STATUS_SCHEMA.names).cast(STATUS_SCHEMA)
    t = t.set_column(t.schema.get_field_index("at"), "at", pc.cast(t.column("at"), pa.int64()))
    if t.column("video_id").null_count or t.column("at").null_count or t.column("status").null_count:
        raise ValueError("null video_id, status or at")
    bad = set(pc.unique(t.column("status")).to_pylist()) - set(STATUSES)
    if bad:
        raise ValueError(f"unknown status {sorted(bad)[:5]}")
    return t.combine_chunks()



def _as_int(v: Any) -> int | None:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    return None


def _as_float(v: Any) -> float | None:
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return float(v)
    return None



__all__ = ["feature_keys", "feature_row", "features_status_rows", "read_rows", "rows_to_features", "shard_keys",
           "status_rows", "status_table"]
