"""Compact shard layout: int8 frame embeddings and audio vectors rebuilt from Chromaprint + MFCC."""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from astradup.config import load_config
from astradup.features.extract import cpu_features
from astradup.io.decode import decode_path
from astradup.store.compact import (CODES_DIM, audio_mfcc_part, dequantise_rows, quantise_rows,
                                    rebuild_audio_vectors)
from astradup.store.shard_names import now_us, part_name
from astradup.store.shard_rows import feature_row
from astradup.store.shard_schema import FEATURES_SCHEMA
from astradup.store.shards import ShardStore
from tests.media import make_video


@pytest.fixture(scope="module")
def real_features(tmp_path_factory):
    """Real audio features of a clip with music, and unit embeddings shaped like SSCD's."""
    cfg = load_config()
    path = make_video(tmp_path_factory.mktemp("compact") / "m.mp4", seconds=12, audio="music", seed=3)
    f = cpu_features(decode_path(str(path), cfg.decode), cfg)
    rng = np.random.default_rng(0)
    emb = np.abs(rng.normal(size=(len(f.timestamps), 512))).astype(np.float32) ** 3  # skewed, like ReLU features
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return dataclasses.replace(f, embeddings=emb)


def test_int8_rows_keep_their_direction():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 512)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = quantise_rows(x)
    assert q.dtype == np.int8 and np.abs(q).max(axis=1).min() == 127
    back = dequantise_rows(q)
    assert np.einsum("ij,ij->i", x, back).min() > 0.999
    np.testing.assert_allclose(np.linalg.norm(back, axis=1), 1.0, rtol=1e-5)
    # Inner products between different rows move by far less than any threshold in the config.
    assert np.abs(x @ x.T - back @ back.T).max() < 0.01
    zero = dequantise_rows(quantise_rows(np.zeros((2, 8), np.float32)))
    assert not zero.any()


def test_audio_vectors_rebuild_from_codes_and_mfcc(real_features):
    f = real_features
    assert len(f.audio_windows) > 3 and f.audio_vectors.shape[1] > CODES_DIM
    part = audio_mfcc_part(f.audio_vectors)
    assert part.dtype == np.float16 and part.shape == (len(f.audio_windows), f.audio_vectors.shape[1] - CODES_DIM)
    back = rebuild_audio_vectors(f.chromaprint, f.chromaprint_hz, f.audio_windows, part)
    assert back.shape == f.audio_vectors.shape
    assert np.abs(back - f.audio_vectors).max() < 2e-3


def test_real_record_is_written_compact_and_reads_back(tmp_path, real_features):
    f = real_features
    store = ShardStore(str(tmp_path))
    path = store.write_features([f])
    row = pq.read_table(path).to_pylist()[0]
    assert row["embeddings"] is None and row["audio_vectors"] is None  # layout 2 columns only
    assert len(row["emb_q"]) == f.embeddings.size and len(row["audio_mfcc"]) == len(f.audio_windows) * 26
    g = store.load_features([f.video_id])[f.video_id]
    assert np.einsum("ij,ij->i", f.embeddings, g.embeddings).min() > 0.999
    assert np.abs(g.audio_vectors - f.audio_vectors).max() < 2e-3
    np.testing.assert_array_equal(g.chromaprint, f.chromaprint)
    # The vector columns take about a byte per embedding value, not the 4 (+ dictionary) of float32.
    meta = pq.ParquetFile(path).metadata
    sizes: dict[str, int] = {}
    for rg in range(meta.num_row_groups):
        for c in range(meta.num_columns):
            col = meta.row_group(rg).column(c)
            name = col.path_in_schema.split(".")[0]
            sizes[name] = sizes.get(name, 0) + col.total_compressed_size
    assert sizes["emb_q"] < 1.1 * f.embeddings.size
    assert sizes["audio_mfcc"] < 2 * len(f.audio_windows) * 26 + 128  # + page headers


def test_shards_written_in_the_first_layout_still_read(tmp_path, real_features):
    """Shards from before the compact layout (float32 embeddings and audio vectors) stay readable."""
    f = real_features
    store = ShardStore(str(tmp_path))
    row = feature_row(f)
    row.update(embeddings=f.embeddings.reshape(-1), emb_q=None, audio_vectors=f.audio_vectors.reshape(-1),
               audio_mfcc=None, indexed_at=now_us())
    (tmp_path / "features").mkdir()
    pq.write_table(pa.Table.from_pylist([row], schema=FEATURES_SCHEMA),
                   tmp_path / "features" / part_name(row["indexed_at"]))
    store.write_status([{"video_id": f.video_id, "uri": f.uri, "status": "ok", "error": "",
                         "size": None, "duration": None, "at": row["indexed_at"]}])
    g = store.load_features([f.video_id])[f.video_id]
    np.testing.assert_array_equal(g.embeddings, f.embeddings)
    np.testing.assert_array_equal(g.audio_vectors, f.audio_vectors)
