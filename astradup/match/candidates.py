"""From KNN neighbours of query frames/windows to a short list of candidate videos.

Votes are counted per query frame (best neighbour per source video), so a source matched by
many query frames beats one that is the nearest neighbour of a single frame by chance.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence


def vote(hits_per_query: Iterable[Sequence[tuple]], weight: float = 1.0,
         votes: dict[str, float] | None = None, floor: float = 0.0) -> dict[str, float]:
    """Add, for every query row, its best score per source video above ``floor`` (tuples start
    (video_id, ..., score)).

    Every row's top_k holds some video, so without a floor a look-alike that is every row's weak
    neighbour out-votes the source of a 5 s copy inside a 2-minute query; counting only how far a
    neighbour beats what unrelated footage commonly reaches lets the few strong rows win."""
    votes = defaultdict(float) if votes is None else votes
    for hits in hits_per_query:
        best: dict[str, float] = {}
        for h in hits:
            vid, score = h[0], float(h[-1])
            if score > best.get(vid, float("-inf")):
                best[vid] = score
        for vid, score in best.items():
            votes[vid] += weight * max(score - floor, 0.0)
    return votes


def top_candidates(votes: dict[str, float], n: int) -> list[str]:
    return [vid for vid, _ in sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]
