"""vPDQ's matching rule, in pure numpy: how much of one video's frames another one holds, both ways.

The rule is ThreatExchange's (vpdq ``matchTwoHash`` / python-threatexchange's brute matcher):

1. each side keeps its frames of quality >= ``quality_min`` (50), then drops exact repeats of a
   hash (a still scene hashed 60 times counts once);
2. a frame of one side is matched when some frame of the other side is within Hamming distance
   ``distance_max`` (31) of it;
3. the answer is two percentages: matched query frames / query frames, and matched source frames /
   source frames. ThreatExchange calls a video a match when the query's is >= 80 and the source's
   >= 0 (any), which :func:`is_match` applies.

Frame order and timestamps play no part (vPDQ matches frames as a set), so a re-cut or a clip of
a longer video still scores on the frames it shares.

Cost: a pair is O(F_q * F_s) 256-bit comparisons, done as XOR + ``np.bitwise_count`` on [*, 4]
uint64 words in blocks of ``BLOCK`` query rows (memory O(BLOCK * F_s)). A brute-force search over a
library of n videos is O(n * F_q * F_s): about 3e9 popcounts for a 10-minute query against 1000
hour-long videos, seconds of CPU; it scales linearly with the library. Past that, the frame hashes
want an index of their own (ThreatExchange puts them in FAISS binary; a multi-index hash over
the 256 bits is the exact alternative: cut into 32 blocks of 8 bits, two hashes within 31 bits
agree on at least one whole block (pigeonhole), so per-block lookups find every candidate frame),
used to pick candidate videos before this exact rule scores them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DISTANCE_MAX = 31  # vPDQ's frame match: Hamming distance <= 31 of 256 bits
QUALITY_MIN = 50  # frames of lower PDQ quality (flat, featureless) are not compared
QUERY_MATCH_MIN = 80.0  # ThreatExchange's match: this share of the query's frames found ...
SOURCE_MATCH_MIN = 0.0  # ... and this share of the source's
BLOCK = 1024  # query rows compared at once: bounds the [BLOCK, F_s, 4] XOR to ~32 MB per 1000 source frames


@dataclass(frozen=True)
class VpdqScore:
    """Percentages (0-100) of each side's usable frames that the other side matched."""

    query_pct: float
    source_pct: float
    query_frames: int  # usable (quality-filtered, de-duplicated) frames compared
    source_frames: int


def usable(hashes: np.ndarray, quality: np.ndarray, quality_min: int = QUALITY_MIN) -> np.ndarray:
    """uint64 [M, 4]: the frames vPDQ compares: quality >= quality_min, first of each exact repeat, in order."""
    h = np.ascontiguousarray(hashes, np.uint8)
    q = np.asarray(quality).reshape(-1)
    if h.ndim != 2 or h.shape[1] != 32 or len(q) != len(h):
        raise ValueError(f"expected hashes [N, 32] and quality [N], got {h.shape} and {q.shape}")
    h = h[q >= quality_min]
    if len(h) == 0:
        return np.zeros((0, 4), np.uint64)
    _, first = np.unique(h, axis=0, return_index=True)
    return np.ascontiguousarray(h[np.sort(first)]).view(np.uint64)


def matched(a: np.ndarray, b: np.ndarray, distance_max: int = DISTANCE_MAX) -> tuple[np.ndarray, np.ndarray]:
    """(bool [len(a)], bool [len(b)]): which rows of each (uint64 [*, 4] from :func:`usable`) have a
    row of the other within ``distance_max``."""
    a_hit = np.zeros(len(a), bool)
    b_hit = np.zeros(len(b), bool)
    if len(a) == 0 or len(b) == 0:
        return a_hit, b_hit
    for s in range(0, len(a), BLOCK):
        x = a[s:s + BLOCK, None, :] ^ b[None, :, :]  # [blk, len(b), 4]
        close = np.bitwise_count(x).sum(axis=2, dtype=np.int32) <= distance_max
        a_hit[s:s + BLOCK] = close.any(axis=1)
        b_hit |= close.any(axis=0)
    return a_hit, b_hit


def score(query: np.ndarray, source: np.ndarray, distance_max: int = DISTANCE_MAX) -> VpdqScore:
    """vPDQ's two match percentages for usable frames (:func:`usable`); 0 for a side with no frames."""
    qh, sh = matched(query, source, distance_max)
    pct = (lambda hit: 100.0 * float(hit.mean()) if len(hit) else 0.0)
    return VpdqScore(pct(qh), pct(sh), len(query), len(source))


def is_match(s: VpdqScore, query_min: float = QUERY_MATCH_MIN, source_min: float = SOURCE_MATCH_MIN) -> bool:
    """ThreatExchange's verdict: enough of the query found (and of the source, by default any)."""
    return s.query_frames > 0 and s.source_frames > 0 and s.query_pct >= query_min and s.source_pct >= source_min
