"""Media and thumbnails are served only from the file that was indexed (serve/media.py): a regular
file, opened without following a symlink, of the recorded size and (newer records) head hash.

The record is made the way indexing makes it: ``decode_one`` on a real file, then the status row
through ShardStore, so what is checked is what the pipeline writes.
"""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from astradup.config import load_config
from astradup.io.ids import HEAD_HASH_BYTES, head_hash
from astradup.store.shards import ShardStore
from serve.media import MEDIA_CHANGED, Indexed, MediaGone, ThumbCache, open_verified, stream_range
from tests.media import make_video


@pytest.fixture()
def indexed(tmp_path):
    """(Indexed record as the pipeline and the shards give it, the file's bytes, another file)."""
    from astradup.decode_stage import decode_one

    (tmp_path / "lib").mkdir()
    video = make_video(tmp_path / "lib" / "v.mp4", seconds=2, size=(96, 64), audio=None, seed=2)
    cfg = load_config(overrides={"data_dir": str(tmp_path / "data")}, environ={})
    row = decode_one(str(video), video.stat().st_size, cfg, frozenset())
    assert row["status"] == "ok", row["error"]
    feats, _ = pickle.loads(row["payload"])
    # The embedder is not under test: unit rows stand in for its output.
    feats.embeddings = np.eye(len(feats.timestamps), 8, dtype=np.float32)
    store = ShardStore(str(tmp_path / "shards"))
    store.write_features([feats])
    status = store.latest_status()[feats.video_id]
    head = store.load_features([feats.video_id])[feats.video_id].meta["head_hash"]
    assert head == head_hash(video)  # recorded at index time, kept through the shards
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 4096)
    return Indexed(status["uri"], status["size"], head), video.read_bytes(), secret


def _read(rec: Indexed) -> bytes:
    f, size = open_verified(rec)
    data = b"".join(stream_range(f, 0, size))
    assert f.closed
    return data


def test_unchanged_file_is_served(indexed):
    rec, data, _ = indexed
    assert _read(rec) == data
    f, size = open_verified(rec)
    assert b"".join(stream_range(f, 10, 100)) == data[10:110] and size == len(data)


def test_symlink_to_another_file_is_refused(indexed):
    rec, data, secret = indexed
    path = rec.uri
    os.unlink(path)
    os.symlink(secret, path)
    for r in (rec, Indexed(rec.uri, rec.size, None),  # an old record (no head hash) too
              Indexed(rec.uri, os.path.getsize(secret), None)):  # even with the target's size recorded
        with pytest.raises(MediaGone) as e:
            open_verified(r)
        assert str(e.value) == MEDIA_CHANGED


def test_same_size_file_with_other_head_bytes_is_refused(indexed):
    rec, data, _ = indexed
    with open(rec.uri, "r+b") as f:  # same size, same inode: only the head hash can tell
        f.write(bytes(b ^ 0xFF for b in data[:16]))
    assert os.path.getsize(rec.uri) == rec.size
    with pytest.raises(MediaGone, match="changed since indexing"):
        open_verified(rec)


def test_other_size_gone_or_not_a_regular_file_is_refused(indexed, tmp_path):
    rec, data, _ = indexed
    with open(rec.uri, "ab") as f:  # bytes appended after the head
        f.write(b"\0")
    with pytest.raises(MediaGone):
        open_verified(Indexed(rec.uri, rec.size, None))
    os.unlink(rec.uri)
    with pytest.raises(MediaGone):
        open_verified(rec)
    os.mkfifo(rec.uri)  # never blocks waiting for a writer
    with pytest.raises(MediaGone):
        open_verified(Indexed(rec.uri, 0, None))
    os.unlink(rec.uri)
    os.mkdir(rec.uri)
    with pytest.raises(MediaGone):
        open_verified(rec)
    with pytest.raises(MediaGone):  # a record with no size has nothing to check against
        open_verified(Indexed(str(tmp_path / "secret.txt"), None, None))


def test_thumbnails_check_the_file_too_even_when_cached(indexed, tmp_path):
    rec, data, secret = indexed
    thumbs = ThumbCache(tmp_path / "thumbs")
    vid = "0" * 32
    jpeg = thumbs.get(vid, rec, 1.0, 2.0)  # rendered by ffmpeg through the verified descriptor
    assert jpeg[:2] == b"\xff\xd8"
    os.rename(rec.uri, str(tmp_path / "moved.mp4"))
    os.symlink(secret, rec.uri)
    with pytest.raises(MediaGone):
        thumbs.get(vid, rec, 1.0, 2.0)  # cached, yet no longer served
    with pytest.raises(MediaGone):
        thumbs.get(vid, rec, 0.0, 2.0)  # never rendered from the new target
    assert not thumbs.path(vid, 0.0).exists()


def test_head_hash_reads_only_the_head(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"a" * HEAD_HASH_BYTES + b"tail")
    q = tmp_path / "g.bin"
    q.write_bytes(b"a" * HEAD_HASH_BYTES + b"other tail")
    short = tmp_path / "s.bin"
    short.write_bytes(b"a" * 10)
    assert head_hash(p) == head_hash(q) != head_hash(short)
    with open(p, "rb") as f:  # a file object: from its position, the same 64 KiB
        assert head_hash(f) == head_hash(p) and f.tell() == HEAD_HASH_BYTES


def test_s3_object_overwritten_since_indexing_is_refused(indexed, s3_bucket, s3_endpoint):
    rec, data, _ = indexed
    fs, bucket = s3_bucket
    fs.pipe(f"{bucket}/v.mp4", data)
    remote = Indexed(f"s3://{bucket}/v.mp4", rec.size, rec.head_hash)
    f, size = open_verified(remote, s3_endpoint)
    assert b"".join(stream_range(f, 0, size)) == data
    fs.pipe(f"{bucket}/v.mp4", b"\0" * 16 + data[16:])  # same size, other head
    with pytest.raises(MediaGone):
        open_verified(remote, s3_endpoint)
    fs.rm(f"{bucket}/v.mp4")
    with pytest.raises(MediaGone):
        open_verified(remote, s3_endpoint)
