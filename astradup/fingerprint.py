"""Fingerprint files: everything a search needs from one video, without the video.

A partner runs ``astradup fingerprint VIDEO -o FP.parquet`` where the video is, and sends only the
file; ``astradup search --fingerprint FP.parquet`` or ``POST /search`` with a ``fingerprint`` part
answers as a search with the video itself would. The file is written from the very record a video
search builds (``Searcher.query_from_file``: one feature pipeline), so the two cannot drift apart.

Layout (schema version 3): one Parquet file holding ONE row, ``FINGERPRINT_SCHEMA``; the file's
key-value metadata holds ``astradup.fingerprint`` = the schema version and ``astradup.embedder`` =
the frame embedder's name (a fingerprint is only comparable with an index built by that
embedder, whatever its dims say).

=============== ================ ====================================================================
column          type             meaning
=============== ================ ====================================================================
video_id        string           content hash of the video file (32 hex characters, as indexing gives)
name            string           the file's name (no folder: the path stays with its owner)
meta_json       string           decoded metadata (duration, fps, width, height, codecs, size...) as JSON
timestamps      list<float32>    [T] seconds of each sampled frame
emb_dim         int32            D, width of a frame embedding
emb_q           binary           T*D int8, row-major: frame embeddings quantised (below)
emb_step        list<float32>    [T] each frame row's quantisation step
mirror_q        binary           T*D int8 embeddings of the mirrored frames (empty: none were made)
mirror_step     list<float32>    [T] (or empty) their steps
phash           binary           T*32 bytes: 256-bit pHash per frame
audio_windows   list<float32>    W*2 values: (start, end) seconds of each audio window
audio_dim       int32            Da, width of an audio window vector
audio_vectors   list<float32>    W*Da values: audio window vectors (L2-normalised rows)
chromaprint     list<uint32>     raw Chromaprint sub-fingerprints of the whole soundtrack
chromaprint_hz  float64          sub-fingerprints per second
pitch_count     int32            V, audio pitch variants (features/pitch_variants.py; 0: none made)
pitch_q         binary           V*W*Da int8: each variant's window vectors, quantised as the frames
pitch_step      list<float32>    [V*W] their steps
pitch_codes     list<uint32>     each pitch reading's Chromaprint sub-fingerprints, one after another
pitch_code_n    list<int32>      [R] how many of them each reading holds (R: 0 when none were made)
pitch_code_scale list<float64>   [R] each reading's time scale: its items sit at the whole track's
                                 item times (chromaprint_hz) times this (match/audio_confirm.py)
=============== ================ ====================================================================

Version 1 files (written before the pitch variants) have no ``pitch_*`` columns and are still read:
their searches miss pitch-shifted soundtracks as every search did then. Version 2 files have no
``pitch_code*`` columns: their audio pieces are confirmed by the track's own codes only.

Quantisation: row i of the embeddings is stored as int8 ``q[i]`` and float32 ``step[i] =
max|x[i]| / 127``; ``x[i] ~= q[i] * step[i]`` to within ``step[i] / 2`` per component
(store/compact.py ``quantise_rows_scaled``, the shards' own int8 form plus the step). Embeddings
are unit vectors, so a reader re-normalises ``q[i] * step[i]``; a frame's similarity to any unit
vector moves by at most ``|x[i] - x^[i]|``, under 0.01 for 512-d SSCD rows (a quarter of the
size of float32), and a calibrated score by at most that over the calibration's width
(``score.emb_hi - emb_lo``, ``segments.visual_hi - visual_lo``: x2.5 with the defaults). Indexed
videos are stored the same way, so the index side is unchanged.

Reading is for hostile files: the size is capped before a byte is parsed, the file metadata
(version, row count, columns and their types, the decoded size Parquet claims) is checked before a
column is read, and then every array's length, range and finiteness. Anything wrong is a
``FingerprintError`` naming the file and the reason (CLI: one line, exit 2; HTTP: 422).
"""
from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from astradup.errors import MediaError
from astradup.io.ids import check_video_id
from astradup.plain import plain
from astradup.features.chromaprint import CHROMAPRINT_HZ, code_reading, item_times
from astradup.records import CodeReading, VideoFeatures
from astradup.store.compact import dequantise_rows, quantise_rows_scaled

SCHEMA_VERSION = "3"
PITCH_COLUMNS = ("pitch_count", "pitch_q", "pitch_step")  # added in version 2
CODE_COLUMNS = ("pitch_codes", "pitch_code_n", "pitch_code_scale")  # added in version 3
# columns each older version lacks (and may not carry)
MISSING = {b"1": PITCH_COLUMNS + CODE_COLUMNS, b"2": CODE_COLUMNS}
MAX_PITCH = 24  # audio.query_pitch holds at most 24 shifts
VERSION_KEY = b"astradup.fingerprint"
EMBEDDER_KEY = b"astradup.embedder"
PHASH_BYTES = 32

MAX_FILE_BYTES = 512 << 20  # a 24 h video at 1 fps is ~100 MB; the service's upload limit may be lower
MAX_DECODED_BYTES = 2 << 30  # what the file's columns may claim to expand to, at most
EXPANSION = 8  # ... and no more than this many times the file's size (real fingerprints barely compress)
MAX_FRAMES = 400_000  # sampled frames (> 4 days at 1 fps)
MAX_WINDOWS = 1_000_000  # audio windows
MAX_CHROMAPRINT = 4_000_000  # sub-fingerprints (~8 a second)
MAX_DIM = 4096  # embedding and audio vector widths
MAX_META_CHARS = 256 << 10
MAX_SECONDS = 1e7  # a timestamp past ~115 days is a broken file

FINGERPRINT_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("name", pa.string()),
    pa.field("meta_json", pa.string()),
    pa.field("timestamps", pa.list_(pa.float32())),
    pa.field("emb_dim", pa.int32()),
    pa.field("emb_q", pa.binary()),
    pa.field("emb_step", pa.list_(pa.float32())),
    pa.field("mirror_q", pa.binary()),
    pa.field("mirror_step", pa.list_(pa.float32())),
    pa.field("phash", pa.binary()),
    pa.field("audio_windows", pa.list_(pa.float32())),
    pa.field("audio_dim", pa.int32()),
    pa.field("audio_vectors", pa.list_(pa.float32())),
    pa.field("chromaprint", pa.list_(pa.uint32())),
    pa.field("chromaprint_hz", pa.float64()),
    pa.field("pitch_count", pa.int32()),
    pa.field("pitch_q", pa.binary()),
    pa.field("pitch_step", pa.list_(pa.float32())),
    pa.field("pitch_codes", pa.list_(pa.uint32())),
    pa.field("pitch_code_n", pa.list_(pa.int32())),
    pa.field("pitch_code_scale", pa.list_(pa.float64())),
])


class FingerprintError(MediaError):
    """A file that is not a fingerprint this build can search with; ``reason`` says why."""


@dataclass
class Fingerprint:
    features: VideoFeatures
    mirror: np.ndarray | None  # mirrored-frame embeddings, None when the file has none
    embedder: str  # the frame embedder that made the embeddings
    pitch: np.ndarray | None = None  # [V, W, Da] audio pitch variants, None when the file has none
    pitch_codes: tuple[CodeReading, ...] = ()  # the pitch readings' Chromaprint codes, () when none


def fingerprint_table(f: VideoFeatures, mirror: np.ndarray | None, embedder: str,
                      pitch: np.ndarray | None = None, pitch_codes: tuple[CodeReading, ...] = ()) -> pa.Table:
    """The one-row table (schema and metadata included) of a query's features."""
    emb = np.asarray(f.embeddings, np.float32)
    t = len(np.asarray(f.timestamps).reshape(-1))
    if emb.ndim != 2 or len(emb) != t:
        raise ValueError(f"{f.video_id}: embeddings {emb.shape} do not match {t} timestamps")
    q, step = _quantised(emb)
    mq, mstep = _quantised(mirror)
    av = np.asarray(f.audio_vectors, np.float32)
    pv = np.asarray(pitch if pitch is not None else np.zeros((0, 0, 0)), np.float32)
    if pv.size and (pv.ndim != 3 or pv.shape[1:] != av.shape):
        raise ValueError(f"{f.video_id}: pitch variants {pv.shape} do not match audio vectors {av.shape}")
    pq_, pstep = _quantised(pv.reshape(-1, av.shape[1]) if pv.size else None)
    row = {
        "video_id": f.video_id, "name": PurePosixPath(str(f.uri).replace("\\", "/")).name,
        "meta_json": json.dumps(plain(f.meta), sort_keys=True),
        "timestamps": np.asarray(f.timestamps, np.float32).reshape(-1),
        "emb_dim": int(emb.shape[1]), "emb_q": q, "emb_step": step,
        "mirror_q": mq, "mirror_step": mstep,
        "phash": np.ascontiguousarray(f.phash, np.uint8).tobytes(),
        "audio_windows": np.asarray(f.audio_windows, np.float32).reshape(-1),
        "audio_dim": int(av.shape[1]) if av.ndim == 2 else 0, "audio_vectors": av.reshape(-1),
        "chromaprint": np.asarray(f.chromaprint, np.uint32).reshape(-1),
        "chromaprint_hz": float(f.chromaprint_hz),
        "pitch_count": int(len(pv)) if pv.size else 0, "pitch_q": pq_, "pitch_step": pstep,
        **_code_columns(f, pitch_codes),
    }
    table = pa.Table.from_pylist([row], schema=FINGERPRINT_SCHEMA)
    return table.replace_schema_metadata({VERSION_KEY: SCHEMA_VERSION.encode(), EMBEDDER_KEY: embedder.encode()})


def _code_columns(f: VideoFeatures, readings: tuple[CodeReading, ...]) -> dict[str, np.ndarray]:
    """The ``pitch_code*`` columns: each reading's codes, count and time scale against the track's
    own item times (a reading's times are those times scaled, features/pitch_variants.py)."""
    hz = float(f.chromaprint_hz or CHROMAPRINT_HZ)
    scales = []
    for r in readings:
        base = item_times(len(r.codes), hz)
        scale = float(r.times[-1] / base[-1]) if len(r.codes) else 1.0
        if len(r.codes) and not np.allclose(r.times, base * scale, rtol=1e-6, atol=1e-6):
            raise ValueError(f"{f.video_id}: a pitch reading's item times are not the track's scaled")
        scales.append(scale)
    return {"pitch_codes": np.concatenate([np.asarray(r.codes, np.uint32) for r in readings])
            if readings else np.zeros(0, np.uint32),
            "pitch_code_n": np.array([len(r.codes) for r in readings], np.int32),
            "pitch_code_scale": np.array(scales, np.float64)}


def _quantised(rows: np.ndarray | None) -> tuple[bytes, np.ndarray]:
    """Rows as int8 bytes and float32 steps (the module doc's Quantisation); nothing for no rows."""
    if rows is None or not len(rows):
        return b"", np.zeros((0,), np.float32)
    q, step = quantise_rows_scaled(np.asarray(rows, np.float32))
    return q.tobytes(), step


def write_fingerprint(path: str | Path, f: VideoFeatures, mirror: np.ndarray | None, embedder: str,
                      pitch: np.ndarray | None = None, pitch_codes: tuple[CodeReading, ...] = ()) -> int:
    """Write the fingerprint file (via a temp name, so a half-written file never has the name);
    returns its size in bytes."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        # Quantised bytes and floats barely compress; zstd still shrinks the JSON and the windows.
        pq.write_table(fingerprint_table(f, mirror, embedder, pitch, pitch_codes), tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path.stat().st_size


def read_fingerprint(src: str | Path | bytes, max_bytes: int = MAX_FILE_BYTES, name: str = "") -> Fingerprint:
    """A fingerprint file (a path, or its bytes from an upload) -> the query's features.

    Raises FingerprintError naming ``name`` (default: the path, or "fingerprint") and the reason."""
    where = name or (str(src) if not isinstance(src, (bytes, bytearray)) else "fingerprint")
    if isinstance(src, (bytes, bytearray)):
        if len(src) > max_bytes:
            raise FingerprintError(where, f"over the limit of {max_bytes} bytes")
        data = bytes(src)
    else:
        try:
            size = os.path.getsize(src)
            if size > max_bytes:
                raise FingerprintError(where, f"{size} bytes, over the limit of {max_bytes} bytes")
            with open(src, "rb") as fh:
                data = fh.read(max_bytes + 1)
        except OSError as e:
            raise FingerprintError(where, f"cannot read: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise FingerprintError(where, f"over the limit of {max_bytes} bytes")
    if not data:
        raise FingerprintError(where, "empty file")
    try:
        pf = pq.ParquetFile(io.BytesIO(data))
        md = pf.metadata
    except Exception as e:  # whatever pyarrow trips on is in the file's bytes
        raise FingerprintError(where, f"not a Parquet file ({type(e).__name__})") from None
    _check_metadata(where, pf, md, min(MAX_DECODED_BYTES, max(64 << 20, EXPANSION * len(data))))
    try:
        table = pf.read()
    except Exception as e:
        raise FingerprintError(where, f"unreadable Parquet data ({type(e).__name__}: {str(e)[:120]})") from None
    try:
        return _from_row(table, pf.schema_arrow.metadata or {})
    except ValueError as e:
        raise FingerprintError(where, str(e)) from None


def _check_metadata(where: str, pf: pq.ParquetFile, md: pq.FileMetaData, max_decoded: int) -> None:
    """Everything that can be refused before a column is decoded."""
    kv = md.metadata or {}
    version = kv.get(VERSION_KEY)
    if version is None:
        raise FingerprintError(where, "not an AstraDup fingerprint (a Parquet file without the "
                                      f"{VERSION_KEY.decode()!r} metadata key; make one with `astradup fingerprint`)")
    if version not in (*MISSING, SCHEMA_VERSION.encode()):
        raise FingerprintError(where, f"fingerprint schema version {version[:20].decode('utf-8', 'replace')!r}; "
                                      f"this AstraDup reads versions 1 to {SCHEMA_VERSION}")
    if md.num_rows != 1 or md.num_row_groups != 1:
        raise FingerprintError(where, f"a fingerprint holds one row, this file has {md.num_rows} "
                                      f"in {md.num_row_groups} row group(s)")
    try:
        schema = pf.schema_arrow
    except Exception as e:
        raise FingerprintError(where, f"unreadable schema ({type(e).__name__})") from None
    for field in FINGERPRINT_SCHEMA:
        if field.name in MISSING.get(version, ()):
            continue
        i = schema.get_field_index(field.name)
        if i < 0:
            raise FingerprintError(where, f"column {field.name!r} is missing")
        if not schema.field(i).type.equals(field.type):
            raise FingerprintError(where, f"column {field.name!r} is {schema.field(i).type}, expected {field.type}")
    extra = [n for n in schema.names if FINGERPRINT_SCHEMA.get_field_index(n) < 0
             or n in MISSING.get(version, ())]
    if extra:
        raise FingerprintError(where, f"unknown column(s) {', '.join(repr(n[:40]) for n in extra[:5])}")
    rg = md.row_group(0)
    # Bytes after decompression, or 8 bytes per leaf value where more: an encoding (dictionary,
    # run-length) can pack millions of equal values into a few bytes before any compression.
    claimed = sum(max(rg.column(i).total_uncompressed_size, 8 * rg.column(i).num_values, 0)
                  for i in range(rg.num_columns))
    if claimed > max_decoded:
        raise FingerprintError(where, f"columns claim {claimed} bytes decoded, over {max_decoded} (a "
                                      "compressed bomb, not a fingerprint)")


def _one(table: pa.Table, name: str) -> Any:
    return table.column(name)[0].as_py()


def _floats(table: pa.Table, name: str, limit: int, dtype=np.float32) -> np.ndarray:
    col = table.column(name).combine_chunks()
    if col.null_count:
        raise ValueError(f"{name} is null")
    values = col.flatten()
    if len(values) > limit:
        raise ValueError(f"{name}: {len(values)} values, more than {limit}")
    a = values.to_numpy(zero_copy_only=False).astype(dtype, copy=True)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{name}: NaN or infinite values")
    return a


def _bytes(table: pa.Table, name: str, limit: int) -> bytes:
    v = _one(table, name) or b""
    if len(v) > limit:
        raise ValueError(f"{name}: {len(v)} bytes, more than {limit}")
    return v


def _dim(table: pa.Table, name: str) -> int:
    d = _one(table, name)
    if d is None or not 0 <= d <= MAX_DIM:
        raise ValueError(f"{name} {d!r} is not a width from 0 to {MAX_DIM}")
    return int(d)


def _rows(flat: np.ndarray, width: int, n: int, what: str) -> np.ndarray:
    if len(flat) != n * width:
        raise ValueError(f"{what}: {len(flat)} values, expected {n} x {width}")
    return flat.reshape(n, width)


def _from_row(table: pa.Table, kv: dict) -> Fingerprint:
    vid = check_video_id(_one(table, "video_id"))
    name = (_one(table, "name") or "")[:200]
    meta_json = _one(table, "meta_json") or "{}"
    if len(meta_json) > MAX_META_CHARS:
        raise ValueError(f"meta_json is over {MAX_META_CHARS // 1024} KiB")
    try:
        meta = json.loads(meta_json, parse_constant=lambda c: float("nan"))
    except (ValueError, RecursionError):
        raise ValueError("meta_json is not JSON") from None
    if not isinstance(meta, dict):
        raise ValueError("meta_json is not a JSON object")
    dur = meta.get("duration")
    if dur is not None and (not isinstance(dur, (int, float)) or isinstance(dur, bool) or not math.isfinite(dur)
                            or not 0 <= dur <= MAX_SECONDS):
        raise ValueError(f"meta duration {str(dur)[:40]!r} is not a number of seconds")
    ts = _floats(table, "timestamps", MAX_FRAMES)
    t = len(ts)
    if t and (ts.min() < 0 or ts.max() > MAX_SECONDS):
        raise ValueError(f"timestamps outside 0..{MAX_SECONDS:g} seconds")
    d = _dim(table, "emb_dim")
    if t and d == 0:
        raise ValueError("emb_dim is 0 with frames present")
    emb = _dequantised(table, "emb", t, d, MAX_FRAMES, str(t))
    mirror = _dequantised(table, "mirror", t, d, MAX_FRAMES, str(t), optional=True)
    ph = np.frombuffer(_bytes(table, "phash", MAX_FRAMES * PHASH_BYTES), np.uint8)
    phash = _rows(ph, PHASH_BYTES, t, "phash").copy()
    windows = _floats(table, "audio_windows", 2 * MAX_WINDOWS)
    if len(windows) % 2:
        raise ValueError("audio_windows: an odd number of values")
    windows = windows.reshape(-1, 2)
    w = len(windows)
    if w and (windows.min() < 0 or windows.max() > MAX_SECONDS or (windows[:, 1] < windows[:, 0]).any()):
        raise ValueError("audio_windows: a window outside 0..1e7 s or ending before it starts")
    da = _dim(table, "audio_dim")
    av = _floats(table, "audio_vectors", MAX_WINDOWS * MAX_DIM)
    vectors = _rows(av, da, w, "audio_vectors").copy()
    chroma = _floats(table, "chromaprint", MAX_CHROMAPRINT, np.uint32)
    hz = _one(table, "chromaprint_hz") or 0.0
    if not math.isfinite(hz) or not 0 <= hz <= 1000:
        raise ValueError(f"chromaprint_hz {hz!r} is not a rate from 0 to 1000")
    feats = VideoFeatures(video_id=vid, uri=f"fingerprint:{name}", timestamps=ts, embeddings=emb,
                          phash=phash, audio_windows=windows, audio_vectors=vectors, chromaprint=chroma,
                          chromaprint_hz=float(hz), meta=meta)
    pitch = _pitch(table, w, da) if "pitch_count" in table.column_names else None
    codes = _pitch_codes(table, float(hz), len(chroma)) if "pitch_codes" in table.column_names else ()
    return Fingerprint(feats, mirror, (kv.get(EMBEDDER_KEY) or b"").decode("utf-8", "replace")[:200], pitch, codes)


def _pitch_codes(table: pa.Table, hz: float, own: int) -> tuple[CodeReading, ...]:
    """The pitch readings' codes of a version 3 file, () when it has none. A reading is the same
    soundtrack read a few semitones off, so it holds about as many items as the track's own ``own``
    (within 16% at 2.5 semitones): more than twice as many is not a reading of this track, and
    would only cost the reader memory."""
    codes = _floats(table, "pitch_codes", MAX_PITCH * MAX_CHROMAPRINT, np.uint32)
    n = _floats(table, "pitch_code_n", MAX_PITCH, np.int64)
    scale = _floats(table, "pitch_code_scale", MAX_PITCH, np.float64)
    if len(n) != len(scale) or (len(n) and (n.min() < 0 or n.max() > MAX_CHROMAPRINT)) or int(n.sum()) != len(codes):
        raise ValueError(f"pitch_code_n: {len(n)} counts from 0 to {MAX_CHROMAPRINT} summing to the "
                         f"{len(codes)} pitch_codes, one per pitch_code_scale ({len(scale)})")
    if len(n) and n.max() > 2 * own + 64:
        raise ValueError(f"pitch_code_n: a reading of {int(n.max())} items against the track's own {own}")
    if len(scale) and not ((scale >= 0.5) & (scale <= 2.0)).all():
        raise ValueError("pitch_code_scale: a time scale outside 0.5..2 (an octave either way)")
    if len(codes) and not hz > 0:
        raise ValueError("pitch_codes without a chromaprint_hz to time them")
    ends = np.cumsum(n)
    return tuple(code_reading(codes[e - k:e], hz, float(sc), shifted=True) for k, e, sc in zip(n, ends, scale))


def _pitch(table: pa.Table, w: int, da: int) -> np.ndarray | None:
    """The [V, W, Da] pitch variants of a version 2 file, None when it has none."""
    v = _one(table, "pitch_count")
    if v is None or not 0 <= v <= MAX_PITCH:
        raise ValueError(f"pitch_count {v!r} is not a count from 0 to {MAX_PITCH}")
    if not v:
        if _bytes(table, "pitch_q", MAX_PITCH * MAX_WINDOWS * MAX_DIM) or \
                len(_floats(table, "pitch_step", MAX_PITCH * MAX_WINDOWS)):
            raise ValueError("pitch_q / pitch_step hold values with pitch_count 0")
        return None
    rows = _dequantised(table, "pitch", v * w, da, MAX_PITCH * MAX_WINDOWS, f"{v} x {w}")
    return rows.reshape(v, w, da) if w else None


def _dequantised(table: pa.Table, name: str, n: int, width: int, max_rows: int, expected: str,
                 optional: bool = False) -> np.ndarray | None:
    """The ``n`` rows of the columns ``<name>_q`` (int8) and ``<name>_step`` back as unit float32
    rows (the module doc's Quantisation); ``optional``: None when both columns are empty."""
    q = np.frombuffer(_bytes(table, f"{name}_q", max_rows * MAX_DIM), np.int8)
    step = _floats(table, f"{name}_step", max_rows)
    if optional and not len(q) and not len(step):
        return None
    if len(step) != n or (len(step) and step.min() < 0):
        raise ValueError(f"{name}_step: {len(step)} non-negative steps, expected {expected}")
    return dequantise_rows(_rows(q, width, n, f"{name}_q").astype(np.float32) * step[:, None])


def check_compatible(fp: Fingerprint, embedder: str, frame_dim: int, audio_dim: int, where: str) -> None:
    """FingerprintError when the file's vectors cannot be compared with this index's: another frame
    embedder (same dims or not), or other audio window settings."""
    if fp.embedder != embedder:
        raise FingerprintError(where, f"made with the frame embedder {fp.embedder[:80]!r}; this index uses "
                                      f"{embedder!r} (fingerprint the video with the same embedder settings)")
    d = np.asarray(fp.features.embeddings).shape[1]
    if len(fp.features.embeddings) and d != frame_dim:
        raise FingerprintError(where, f"{d}-d frame embeddings; this index's embedder makes {frame_dim}-d")
    da = np.asarray(fp.features.audio_vectors).shape[1]
    if len(fp.features.audio_vectors) and da != audio_dim:
        raise FingerprintError(where, f"{da}-d audio window vectors; this index's audio settings make "
                                      f"{audio_dim}-d")
