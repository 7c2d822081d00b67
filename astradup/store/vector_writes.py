"""Writing vectors: a video's rows upserted under per-row keys, stale rows deleted, deletes by id.

Concurrent writers. Every row is written with ``upsert`` under its deterministic key
(``"<video_id>/<row>"``, store/milvus_expr.py). Two writers indexing the same video (two
overlapping backfills on a server, a retry after a lost reply) therefore overwrite each other's
rows instead of adding copies; a re-index with fewer rows then deletes the rows past its count.
Auto ids with delete-then-insert, the earlier layout, doubled a video's rows when two writers
interleaved (both deletes, then both inserts); collections of that layout still take those writes
(``_replace_legacy``). Searches never see a half-written video either way: an upsert replaces rows
in place, and a deletion shows as the video's absence.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from astradup.errors import ConfigError
from astradup.records import STATUS_OK, VideoFeatures
from astradup.store.milvus_collections import PHASH_BYTES, VectorCollections
from astradup.store.milvus_expr import check_id, id_filter, pk, stale_filter

_INSERT_CHUNK = 4096  # rows per insert request (~8 MiB at 512-d, well under gRPC limits)
_DELETE_CHUNK = 500  # video ids per delete filter
_STALE_CHUNK = 256  # OR terms per stale-row delete (one per batch of 100; 256 parse on Lite and a 2.3 server)


def upsert_many(cols: VectorCollections, items: Sequence[VideoFeatures]) -> int:
    """Replace the vectors of many videos; returns videos written.

    Rows are upserted under ``"<video_id>/<row>"`` keys, then rows past each video's new
    count are deleted (a re-index with fewer frames). Idempotent, so safe to retry and safe
    with several writers: two jobs writing the same video leave it once, and a search meanwhile
    sees each row's old or new version, never neither (a plain delete-then-insert would show
    the video missing). Records that are not ``ok`` are skipped and leave existing vectors
    alone: a transient failure on re-index must not wipe the vectors of the last good run
    (the shards keep those features too). A video repeated in ``items`` keeps its last record.
    """
    latest: dict[str, VideoFeatures] = {}
    for f in items:
        if f.status == STATUS_OK:
            _check(cols, f)
            latest[f.video_id] = f
    if not latest:
        return 0
    frames: list[dict] = []
    codes: list[dict] = []
    audio: list[dict] = []
    counts: dict[str, dict[str, int]] = {name: {} for name in cols.in_use}
    for vid, f in latest.items():
        ts = np.asarray(f.timestamps, np.float32).reshape(-1).tolist()
        emb = np.asarray(f.embeddings, np.float32)
        frames.extend({"id": pk(vid, i), "video_id": vid, "row": i, "t": t, "vector": v}
                      for i, (t, v) in enumerate(zip(ts, emb)))
        ph = np.asarray(f.phash, np.uint8) if cols.phash_enabled else np.zeros((0, PHASH_BYTES), np.uint8)
        codes.extend({"id": pk(vid, i), "video_id": vid, "row": i, "t": t, "code": c}
                     for i, (t, c) in enumerate(zip(ts, cols.codes_to_field(ph))))
        win = np.asarray(f.audio_windows, np.float32).reshape(-1, 2).tolist()
        av = np.asarray(f.audio_vectors, np.float32)
        audio.extend({"id": pk(vid, i), "video_id": vid, "row": i, "t_start": s, "t_end": e, "vector": v}
                     for i, ((s, e), v) in enumerate(zip(win, av)))
        counts[cols.frames][vid] = len(emb)
        if cols.phash_enabled:
            counts[cols.phash][vid] = min(len(ts), len(ph))
        counts[cols.audio][vid] = min(len(win), len(av))
    for name, rows in ((cols.frames, frames), (cols.phash, codes), (cols.audio, audio)):
        if name not in counts:
            continue
        if name in cols.legacy:
            _replace_legacy(cols, name, list(latest), rows)
            continue
        for i in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows[i:i + _INSERT_CHUNK]
            cols.conn.call(f"upsert {name}", lambda c, n=name, r=chunk: c.upsert(n, r))
        _delete_stale(cols, name, counts[name])
    return len(latest)


def _delete_stale(cols: VectorCollections, name: str, counts: dict[str, int]) -> None:
    """Delete rows at or past each video's new row count (left by a longer earlier version)."""
    items = list(counts.items())
    for i in range(0, len(items), _STALE_CHUNK):
        flt = stale_filter(items[i:i + _STALE_CHUNK])
        cols.conn.call(f"delete stale rows of {name}", lambda c, f=flt: c.delete(name, filter=f))


def _replace_legacy(cols: VectorCollections, name: str, ids: list[str], rows: list[dict]) -> None:
    """The auto-id layout's write: delete the videos' rows, insert the new ones (not idempotent:
    two writers interleaving duplicate rows, and so may a retried insert whose reply was lost)."""
    for i in range(0, len(ids), _DELETE_CHUNK):
        flt = id_filter(ids[i:i + _DELETE_CHUNK])
        cols.conn.call(f"delete {name}", lambda c, f=flt: c.delete(name, filter=f))
    plain = [{k: v for k, v in r.items() if k not in ("id", "row")} for r in rows]
    for i in range(0, len(plain), _INSERT_CHUNK):
        chunk = plain[i:i + _INSERT_CHUNK]
        cols.conn.call(f"insert {name}", lambda c, r=chunk: c.insert(name, r))


def _check(cols: VectorCollections, f: VideoFeatures) -> None:
    check_id(f.video_id)
    t = len(np.asarray(f.timestamps).reshape(-1))
    emb, ph = np.asarray(f.embeddings), np.asarray(f.phash)
    if len(emb) != t or (t and (emb.ndim != 2 or emb.shape[1] != cols.visual_dim)):
        raise ConfigError(f"{f.video_id}: embeddings {emb.shape} do not fit [{t}, {cols.visual_dim}] "
                          f"(the embedder's dim must match the {cols.frames} collection)")
    if len(ph) and (ph.shape != (t, PHASH_BYTES)):
        raise ValueError(f"{f.video_id}: phash {ph.shape} is not [{t}, {PHASH_BYTES}]")
    w = len(np.asarray(f.audio_windows).reshape(-1, 2))
    av = np.asarray(f.audio_vectors)
    if len(av) != w or (w and (av.ndim != 2 or av.shape[1] != cols.audio_dim)):
        raise ConfigError(f"{f.video_id}: audio_vectors {av.shape} do not fit [{w}, {cols.audio_dim}] "
                          f"(the audio embedder's dim must match the {cols.audio} collection)")


def delete_ids(cols: VectorCollections, ids: list[str]) -> None:
    """Every row of these videos, in every collection in use."""
    for i in range(0, len(ids), _DELETE_CHUNK):
        flt = id_filter(ids[i:i + _DELETE_CHUNK])
        for name in cols.in_use:
            cols.conn.call(f"delete {name}", lambda c, n=name: c.delete(n, filter=flt))


__all__ = ["delete_ids", "upsert_many"]
