"""The decode task of the indexing graph: one file -> its CPU features and frames, or a failure record.

pHash, PDQ, audio and metadata are computed here, where the file is read, so PCM never crosses the
object store; only the sampled frames go on to the embedder actors (astradup/embed_stage.py). A
file that cannot be read or decoded becomes a ``failed`` record, never an exception: one hostile
file must not stop the job.
"""
from __future__ import annotations

import hashlib
import pickle
import time

import numpy as np

from astradup import telemetry
from astradup.config import Config
from astradup.errors import MediaError
from astradup.io.sources import local_copy
from astradup.logs import get_logger, setup_logging
from astradup.records import STATUS_FAILED, STATUS_OK, VideoFeatures, VideoRef

STATUS_SKIPPED = "skipped"  # a row for content already indexed: counted, not written
log = get_logger("astradup.pipeline")  # the indexing pipeline's records keep one logger name (dashboards filter on it)


def _fallback_id(uri: str) -> str:
    """An id for a file whose bytes cannot be read at all (so its failure can still be recorded)."""
    return "u" + hashlib.blake2b(uri.encode(), digest_size=16).hexdigest()[1:]


def decode_one(uri: str, size: int, cfg: Config, skip_ids: frozenset[str]) -> dict:
    """Decode one file and compute its CPU features; never raises (a failure is a record).

    A long file (more than decode.STREAM_FRAMES sampled frames) is decoded as a stream and
    embedded here, chunk by chunk, with this worker's cached model: its payload then carries
    finished features and no frames, which EmbedStage passes through (see streamed_features).
    """
    from astradup.features.extract import cpu_features, streamed_features
    from astradup.io.probe import probe
    from astradup.io.decode import decode_video
    from astradup.io.sampling import should_stream
    from astradup.io.ids import content_id, head_hash

    video_id = ""
    try:
        with local_copy(uri, cfg.s3_endpoint) as path:
            video_id = content_id(path)
            if video_id in skip_ids:
                return {"video_id": video_id, "uri": uri, "status": STATUS_SKIPPED, "error": "",
                        "payload": b""}
            ref = VideoRef(video_id, uri, size)
            meta = probe(path)
            # Kept with the features (meta_json): the service checks it before serving the file.
            meta["head_hash"] = head_hash(path)
            if should_stream(meta, cfg.decode):
                from astradup.features.embedder import get_embedder

                with telemetry.timed(telemetry.INDEX_STAGE_LATENCY, stage="decode"):
                    feats = streamed_features(path, ref, cfg, get_embedder(cfg.embedder), meta=meta)
                return {"video_id": video_id, "uri": uri, "status": STATUS_OK, "error": "",
                        "payload": pickle.dumps((feats, None), protocol=5)}
            with telemetry.timed(telemetry.INDEX_STAGE_LATENCY, stage="decode"):
                dec = decode_video(path, ref, cfg.decode, meta=meta)
            with telemetry.timed(telemetry.INDEX_STAGE_LATENCY, stage="features"):
                feats = cpu_features(dec, cfg)
            return {"video_id": video_id, "uri": uri, "status": STATUS_OK, "error": "",
                    "payload": pickle.dumps((feats, dec.frames), protocol=5)}
    except MediaError as e:
        err = e.reason
    except Exception as e:  # a decoder crash on hostile input must not take the pipeline down
        err = f"{type(e).__name__}: {e}"
    video_id = video_id or _fallback_id(uri)
    failed = VideoFeatures.failed(video_id, uri, err, {"size": size})
    return {"video_id": video_id, "uri": uri, "status": STATUS_FAILED, "error": err,
            "payload": pickle.dumps((failed, None), protocol=5)}


def _decode_logged(uri: str, size: int, cfg: Config, skip_ids: frozenset[str]) -> dict:
    """``decode_one`` plus its log line: one per video, with how long it took and how it ended."""
    t0 = time.perf_counter()
    row = decode_one(uri, size, cfg, skip_ids)
    fields = {"video_id": row["video_id"], "uri": uri, "stage": "decode", "status": row["status"],
              "duration_s": time.perf_counter() - t0}
    if row["status"] == STATUS_FAILED:
        log.warning("decode failed", extra={**fields, "error": row["error"]})
    else:
        log.info("decoded", extra=fields)
    return row


def decode_batch(batch: dict[str, np.ndarray], cfg: Config, skip_ids: frozenset[str]) -> dict:
    setup_logging(cfg.log)  # a Ray worker never runs the CLI's main: its logging is set up here
    rows = [_decode_logged(str(u), int(s), cfg, skip_ids) for u, s in zip(batch["uri"], batch["size"])]
    return {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]} if rows else batch


def batch_rows(batch: dict[str, np.ndarray]):
    """(video_id, uri, status, error, payload) per row of a decoded (and embedded) batch."""
    return zip(batch["video_id"], batch["uri"], batch["status"], batch["error"], batch["payload"])
