"""``shard_schema.conform``: every candidate read goes through it, so a table already in the
features schema must come back untouched, and an older shard's table must still gain its
missing columns as nulls with the current types."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from astradup.records import VideoFeatures
from astradup.store.shard_rows import feature_row
from astradup.store.shard_schema import FEATURES_SCHEMA, conform


def _table() -> pa.Table:
    rng = np.random.default_rng(0)
    f = VideoFeatures(video_id="a" * 32, uri="a.mp4", timestamps=np.arange(3, dtype=np.float32),
                      embeddings=rng.normal(size=(3, 8)).astype(np.float32), phash=np.zeros((3, 32), np.uint8),
                      audio_windows=np.zeros((0, 2), np.float32), audio_vectors=np.zeros((0, 4), np.float32),
                      chromaprint=np.zeros(0, np.uint32), chromaprint_hz=0.0, meta={"duration": 3.0})
    row = feature_row(f) | {"indexed_at": 1}  # the writer stamps it
    return pa.Table.from_pylist([row], schema=FEATURES_SCHEMA)


def test_a_table_in_the_schema_is_returned_as_is():
    t = _table()
    assert conform(t) is t


def test_an_older_shards_table_gains_its_missing_columns_as_nulls():
    t = _table()
    old = t.drop_columns(["pdq", "pdq_quality"]).cast(pa.schema([f for f in FEATURES_SCHEMA
                                                               if f.name not in ("pdq", "pdq_quality")]))
    got = conform(old)
    assert got.schema.equals(FEATURES_SCHEMA)
    assert got.column("pdq").null_count == 1 and got.column("video_id").to_pylist() == ["a" * 32]
    # a column read with another width of the same kind is cast to the schema's
    narrow = t.set_column(t.schema.get_field_index("duration"), pa.field("duration", pa.float32()),
                          t.column("duration").cast(pa.float32()))
    back = conform(narrow)
    assert back.schema.equals(FEATURES_SCHEMA) and back.column("duration").to_pylist() == [3.0]
