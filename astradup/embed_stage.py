"""The embedder actors of the indexing graph: the frames of a batch of videos -> their frame vectors.

A callable class, so Ray Data loads the model once per actor; placed on GPUs or CPUs by
astradup/features/placement.py. Videos streamed by the decode task (long files) arrive already
embedded and pass through.
"""
from __future__ import annotations

import pickle
import time

import numpy as np

from astradup import telemetry
from astradup.config import Config
from astradup.logs import get_logger, setup_logging
from astradup.records import STATUS_OK

log = get_logger("astradup.pipeline")  # the indexing pipeline's records keep one logger name (dashboards filter on it)


class EmbedStage:
    """A callable class, so Ray Data loads the model once per actor and reuses it for every batch.

    The frames of every video in the batch go through one ``embed`` call: a GPU is only busy
    when its batches are full, and one short video alone rarely fills one.
    """

    def __init__(self, cfg: Config) -> None:
        from astradup.features.embedder import get_embedder

        setup_logging(cfg.log)  # this actor's process has no logging of ours until now
        self.embedder = get_embedder(cfg.embedder)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import dataclasses

        payloads = list(batch["payload"])
        todo = [(i, *pickle.loads(p)) for i, (st, p) in enumerate(zip(batch["status"], payloads))
                if st == STATUS_OK]
        todo = [(i, f, fr) for i, f, fr in todo if fr is not None]
        if todo:
            frames = np.concatenate([fr for _, _, fr in todo]) if len(todo) > 1 else todo[0][2]
            t_embed = time.perf_counter()
            emb = self.embedder.embed(frames).astype(np.float32) if len(frames) else \
                np.zeros((0, self.embedder.dim), np.float32)
            batch_s = time.perf_counter() - t_embed
            start = 0
            for i, f, fr in todo:
                part = emb[start:start + len(fr)]
                start += len(fr)
                _embedded(f.video_id, len(fr), len(frames), batch_s, len(todo))
                payloads[i] = pickle.dumps((dataclasses.replace(f, embeddings=part), None), protocol=5)
        out = dict(batch)
        out["payload"] = np.array(payloads, dtype=object)
        return out


def _embedded(video_id: str, n_frames: int, batch_frames: int, batch_s: float, batch_videos: int) -> None:
    """Metric and log line for one video of an embed batch. The batch's videos share one embed
    call, whose cost grows with the frame count, so a video's share is by its frames."""
    share = batch_s * n_frames / batch_frames if batch_frames else 0.0
    telemetry.observe(telemetry.INDEX_STAGE_LATENCY, share, stage="embed")
    log.info("embedded", extra={"video_id": video_id, "stage": "embed", "status": STATUS_OK, "duration_s": share,
                                "frames": n_frames, "batch_s": round(batch_s, 4), "batch_videos": batch_videos})
