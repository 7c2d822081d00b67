"""vPDQ exchange glue: a vPDQ hash file searched against the library, and stored hashes exported as one.

The matching itself is match/vpdq_match.py (pure numpy) and the file format io/vpdq_file.py; this
module only walks the shards. Candidates are every live video with PDQ hashes (brute force: one
narrow scan of the ``pdq`` columns, see match/vpdq_match.py for the cost and how it would scale);
videos indexed before PDQ was stored have none and are skipped (re-index them to include them).
Each search lists the shards for new ones and reads the two PDQ columns of every live row (plus its
id, uri and timestamps): I/O and CPU grow linearly with the library, ~33 bytes a frame.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from astradup.io.vpdq_file import VpdqHashes, frame_numbers
from astradup.match import vpdq_match
from astradup.records import Label, VideoFeatures, VideoMatch
from astradup.store.shards import ShardStore

PDQ_COLUMNS = ("pdq", "pdq_quality")


def query_id(data: bytes) -> str:
    """A hash file's id: its content hash, what reviewers' verdicts on its matches are keyed by
    (the CLI and the service give the same file the same id)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def verdict(s: vpdq_match.VpdqScore) -> Label:
    """The normal search's labels from vPDQ's percentages: ThreatExchange's match (>= 80% of the
    query found) is a duplicate when the source is as fully found too, else a near-duplicate (the
    query is a part of it); any shared frame short of that is similar."""
    if vpdq_match.is_match(s):
        return Label.DUPLICATE if s.source_pct >= vpdq_match.QUERY_MATCH_MIN else Label.NEAR_DUPLICATE
    return Label.SIMILAR if s.query_pct > 0 else Label.NONE


def to_match(f: VideoFeatures, s: vpdq_match.VpdqScore) -> VideoMatch:
    """A VideoMatch (the normal search's result shape) whose scores are vPDQ's two match shares in [0, 1]."""
    q, src = s.query_pct / 100.0, s.source_pct / 100.0
    return VideoMatch(
        source_id=f.video_id, source_uri=f.uri, scores={"vpdq_query": q, "vpdq_source": src},
        fused=q, confidence=q, label=verdict(s), review=False,
        notes=(f"vPDQ: {s.query_pct:.1f}% of the query's {s.query_frames} frames found in the source, "
               f"{s.source_pct:.1f}% of the source's {s.source_frames} in the query",))


def search_hashes(shards: ShardStore, query: VpdqHashes, top: int = 10, include_none: bool = False,
                  batch: int = 200) -> list[VideoMatch]:
    """Library videos matching a vPDQ hash, best query share first (then source share)."""
    q = vpdq_match.usable(query.hashes, query.quality)
    scored: list[tuple[vpdq_match.VpdqScore, VideoFeatures]] = []
    if len(q):
        for chunk in shards.iter_features(batch_size=batch, columns=PDQ_COLUMNS):
            for f in chunk:
                if f.has_pdq:
                    s = vpdq_match.score(q, vpdq_match.usable(f.pdq, f.pdq_quality))
                    if include_none or s.query_pct > 0:
                        scored.append((s, f))
    scored.sort(key=lambda sf: (-sf[0].query_pct, -sf[0].source_pct, sf[1].video_id))
    return [to_match(f, s) for s, f in scored[:top]]


def stored_hashes(f: VideoFeatures) -> VpdqHashes:
    """A record's PDQ hashes as vPDQ frames (frame numbers from the native frame rate where known)."""
    fps = f.meta.get("fps")
    return VpdqHashes(frame_numbers(f.timestamps, float(fps) if isinstance(fps, (int, float)) else None),
                      np.asarray(f.pdq, np.uint8), np.asarray(f.pdq_quality, np.uint8),
                      np.asarray(f.timestamps, np.float64))


@dataclass
class ExportPlan:
    """What an export will write: the videos with hashes, and the ids it cannot (unknown / no PDQ)."""

    records: list[VideoFeatures]
    unknown: list[str]
    without_pdq: list[str]


def plan_export(shards: ShardStore, video_ids: Iterable[str]) -> ExportPlan:
    """The named videos (every live one when none are named), split by whether they can be exported."""
    ids = list(dict.fromkeys(video_ids))
    if ids:
        got = shards.load_features(ids)
        found = [got[v] for v in ids if v in got]
        unknown = [v for v in ids if v not in got]
    else:
        found = [f for chunk in _all(shards) for f in chunk]
        unknown = []
    return ExportPlan([f for f in found if f.has_pdq], unknown, [f.video_id for f in found if not f.has_pdq])


def _all(shards: ShardStore) -> Iterator[list[VideoFeatures]]:
    return shards.iter_features(columns=PDQ_COLUMNS + ("meta_json", "fps"))
