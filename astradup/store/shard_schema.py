"""The shards' Parquet layout: both schemas, what every column holds, and how columns are encoded.

One place for the format, so the writer (store/shard_writer.py), the row codec (store/shard_rows.py)
and every reader agree on it; a change here is a change of the file format.
"""
from __future__ import annotations

import pyarrow as pa

from astradup.records import STATUS_DELETED, STATUS_FAILED, STATUS_OK

PHASH_BYTES = 32  # 256-bit pHash per frame

# The outcome columns that open both schemas, in this order (the file format depends on it).
_OUTCOME_FIELDS = [
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("uri", pa.string()),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
]

FEATURES_SCHEMA = pa.schema([
    *_OUTCOME_FIELDS,
    pa.field("duration", pa.float64()),
    pa.field("fps", pa.float64()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("vcodec", pa.string()),
    pa.field("acodec", pa.string()),
    pa.field("container", pa.string()),
    pa.field("size", pa.int64()),
    pa.field("meta_json", pa.string()),
    pa.field("timestamps", pa.list_(pa.float32())),
    pa.field("emb_dim", pa.int32()),
    pa.field("embeddings", pa.list_(pa.float32())),  # layout 1 only (null in layout 2)
    pa.field("emb_q", pa.binary()),
    pa.field("phash", pa.binary()),
    pa.field("audio_windows", pa.list_(pa.float32())),
    pa.field("audio_dim", pa.int32()),
    pa.field("audio_vectors", pa.list_(pa.float32())),  # layout 1 only (null in layout 2)
    pa.field("audio_mfcc", pa.list_(pa.float16())),
    pa.field("chromaprint", pa.list_(pa.uint32())),
    pa.field("chromaprint_hz", pa.float64()),
    pa.field("indexed_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("pdq", pa.binary()),
    pa.field("pdq_quality", pa.binary()),
])
"""One row per video (written by :func:`store.shard_writer.write_features`).

=============== ======================= =====================================================
column          type                    meaning
=============== ======================= =====================================================
video_id        string                  content hash of the file (the key everywhere)
uri             string                  where the file was read from
status          string                  ``ok`` | ``failed`` (a failed file is still a row)
error           string                  why it failed ("" when ok)
duration        float64                 meta["duration"] seconds (null when unknown)
fps             float64                 meta["fps"] native frame rate (null when unknown)
width, height   int32                   meta["width"], meta["height"] pixels
vcodec, acodec  string                  meta["vcodec"], meta["acodec"] codec names
container       string                  meta["container"] format name
size            int64                   meta["size"] bytes of the source file
meta_json       string                  every other meta key as a JSON object
timestamps      list<float32>           [T] seconds of each sampled frame
emb_dim         int32                   D; ``embeddings`` is [T, D] row-major, flattened
embeddings      list<float32>           layout 1 (older shards): T*D values, L2-normalised rows
emb_q           binary                  layout 2: T*D int8 values, each row scaled to +-127 (read
                                        back L2-normalised; store/compact.py). Binary, since
                                        Parquet stores a list<int8> as 4-byte INT32s
phash           binary                  T*32 bytes: [T, 32] uint8 packbits, 256 bits a frame
audio_windows   list<float32>           W*2 values: [W, 2] (start, end) seconds
audio_dim       int32                   Da; ``audio_vectors`` is [W, Da] flattened
audio_vectors   list<float32>           layout 1: W*Da values, L2-normalised rows
audio_mfcc      list<float16>           layout 2: the MFCC part of each window vector (Da - 192
                                        values a window); the rest is rebuilt from ``chromaprint``
chromaprint     list<uint32>            [N] raw Chromaprint sub-fingerprints
chromaprint_hz  float64                 sub-fingerprints per second
indexed_at      timestamp[us, UTC]      when the row was written (same for a whole shard)
pdq             binary                  T*32 bytes: [T, 32] uint8 PDQ hash of each frame (vPDQ's
                                        per-frame hash, bytes in its hex order); null or empty in
                                        shards written before PDQ was stored: read as missing
pdq_quality     binary                  T bytes: PDQ quality 0-100 of each frame
=============== ======================= =====================================================

Matrices are flattened into one list with the width in a separate column because a flat
``list<float32>`` converts to numpy with one zero-copy buffer view per column chunk, where a
nested list or fixed-size list of lists costs a Python object per row or per frame. Rows of a
shard are sorted by ``video_id`` and written in small row groups, so the row-group statistics
let a ``video_id`` filter read only the group that holds the video.
"""

STATUS_SCHEMA = pa.schema([
    *_OUTCOME_FIELDS,
    pa.field("size", pa.int64()),
    pa.field("duration", pa.float64()),
    pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
])
"""One row per outcome: ``ok`` | ``failed`` (from write_features) or ``deleted`` (tombstone).

The latest row per video_id (by ``at``, ties to the later file, then the later row) is the
video's state; ``latest_status()`` answers "which files failed and why" for a whole backfill.
"""

STATUSES = (STATUS_OK, STATUS_FAILED, STATUS_DELETED)
ROW_GROUP_BYTES = 1 << 20  # small groups so one video's read skips the rest of a shard (8 MB groups: 36 ms per candidate fetched, library_scale)
# Float vectors and pHash bits are near-incompressible: zstd saved ~7% on them but made reads
# ~5x slower (100 videos x 300 x 512 floats: 1.16 s zstd vs 0.24 s plain), so they go raw.
_RAW_COLUMNS = frozenset({"embeddings", "phash", "audio_vectors", "timestamps", "audio_windows", "pdq"})
FEATURES_COMPRESSION = {n: ("none" if n in _RAW_COLUMNS else "zstd") for n in FEATURES_SCHEMA.names}
# Dictionary pages only pay on repeated values (ids, codec names). On near-unique floats pyarrow
# first builds a dictionary as large as the data, then falls back to plain pages, and the file
# keeps both: the float32 embeddings took 10.7 MB/h instead of 7.4 (docs/performance.md).
DICT_COLUMNS = [n for n in FEATURES_SCHEMA.names
                if n in ("video_id", "uri", "status", "error", "vcodec", "acodec", "container")]
# Row-group min/max only where a filter could use them (ids, codes, times). On the per-frame blobs
# (pHash, quantised embeddings) and meta_json they were two copies of a value per row group: 2/3 of
# a 94 KB footer, which every shard read on object storage fetches and the footer cache holds
# (store/shard_listing.footer_cost).
STATS_COLUMNS = [f.name for f in FEATURES_SCHEMA if f.name != "meta_json" and not (
    pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) or pa.types.is_list(f.type)
    or pa.types.is_large_list(f.type))]

# Promoted meta keys: (column, python type of the column, value types accepted without loss).
META_COLUMNS: tuple[tuple[str, type, tuple[type, ...]], ...] = (
    ("duration", float, (float, int)),
    ("fps", float, (float, int)),
    ("width", int, (int,)),
    ("height", int, (int,)),
    ("vcodec", str, (str,)),
    ("acodec", str, (str,)),
    ("container", str, (str,)),
    ("size", int, (int,)),
)


def conform(t: pa.Table) -> pa.Table:
    """A features table in FEATURES_SCHEMA: columns an older shard lacks read as nulls. A table
    already in it is returned as is (casting every column anyway was an eighth of a candidate read)."""
    if t.schema.equals(FEATURES_SCHEMA):
        return t
    cols = [t.column(f.name) if f.name in t.column_names else pa.nulls(t.num_rows, f.type)
            for f in FEATURES_SCHEMA]
    return pa.Table.from_arrays(cols, names=FEATURES_SCHEMA.names).cast(FEATURES_SCHEMA)


__all__ = ["DICT_COLUMNS", "FEATURES_COMPRESSION", "FEATURES_SCHEMA", "META_COLUMNS", "PHASH_BYTES", "STATS_COLUMNS",
           "ROW_GROUP_BYTES", "STATUSES", "STATUS_SCHEMA", "conform"]
