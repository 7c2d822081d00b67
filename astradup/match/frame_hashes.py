"""PDQ distances read as frame similarities: a second reading of each frame for segment alignment.

SSCD reads a picture's colour as part of its content, so a grayscale or strongly recoloured copy of
a colourful shot can fall to 0.55-0.6 of its source (hard seed 5 ``q_006``: an orange flower copied
flipped, grey and under an overlay, 4 s long), where nothing tells it from the look-alikes that
match as well. PDQ, which every record already stores for vPDQ (features/pdq.py), hashes the
luma's low-frequency structure and ignores colour and contrast: the same frames lie 48-56 bits
apart, while of the 2.3 million pairs of trusted frames from different videos on the hard
benchmark's seeds 5-8 one came within 80 bits and none within 70. Smooth pictures (a blurred
nebula wallpaper, a gradient) hash alike whatever they show; PDQ's own quality score says so, and
ThreatExchange trusts a hash from quality 50. Such frames, and blank ones, keep only SSCD's reading
(without that gate three dev40 queries reported copies of a nebula-wallpaper source, two of them
distractors, LCT 0.998 -> 0.942).

A horizontal flip negates the DCT coefficients of odd horizontal frequency and leaves the others,
so the mirrored query's hash is its own with those bits flipped (the median they are compared
with barely moves: a flipped test picture's PDQ lies 12 bits from the masked one); SSCD needs no
such step, being nearly mirror-invariant.
"""
from __future__ import annotations

import numpy as np

from astradup.config import SegmentConfig
from astradup.features.phash import hamming_matrix
from astradup.records import VideoFeatures

PDQ_SIDE = 16  # PDQ keeps a 16 x 16 block of DCT coefficients, one bit each, row by row
PDQ_MIN_QUALITY = 50  # ThreatExchange's floor for a hash worth matching (pdqhash's quality, 0-100)
# the similarity a sure PDQ match (at most ``pdq_full`` bits apart) stands for: what SSCD gives a
# typical copy (hard benchmark copies' median 0.86, dev 0.98). At visual_hi (0.80) a 4 s copy that
# only PDQ sees was no more distinctive than its look-alikes.
PDQ_SURE_SIM = 0.9
MIRROR_MASK = np.packbits(np.tile(np.arange(PDQ_SIDE) % 2, PDQ_SIDE).astype(np.uint8))


def mirrored(hashes: np.ndarray) -> np.ndarray:
    """The PDQ hashes of the horizontally mirrored frames, from the hashes alone."""
    return np.asarray(hashes, np.uint8) ^ MIRROR_MASK


def _usable(f: VideoFeatures) -> np.ndarray | None:
    """Row mask of the frames whose PDQ counts, or None when the record has none for its frames."""
    if not f.has_pdq or not len(f.pdq) == len(f.timestamps) == len(f.embeddings):
        return None
    return (np.asarray(f.pdq_quality) >= PDQ_MIN_QUALITY) & ~f.blank_rows()


def pdq_similarity(q: VideoFeatures, s: VideoFeatures, cfg: SegmentConfig) -> np.ndarray | None:
    """Query frames x source frames: PDQ_SURE_SIM where the hashes (the query's own or mirrored, the
    nearer) lie at most ``cfg.pdq_full`` bits apart, falling linearly to ``cfg.visual_lo`` (no
    evidence) at ``cfg.pdq_none``, 0 beyond it and wherever either frame's hash is not trusted; the
    shape of the pair's embedding products. None when either record has no hashes for its frames or
    ``pdq_none <= pdq_full`` (off)."""
    if cfg.pdq_none <= cfg.pdq_full:
        return None
    qok, sok = _usable(q), _usable(s)
    if qok is None or sok is None or not qok.any() or not sok.any():
        return None
    qi, si = np.flatnonzero(qok), np.flatnonzero(sok)
    qh, sh = np.asarray(q.pdq)[qi], np.asarray(s.pdq)[si]
    both = hamming_matrix(np.concatenate([qh, mirrored(qh)]), sh)  # one product: the source unpacked once
    bits = np.minimum(both[:len(qh)], both[len(qh):]).astype(np.float32)
    fall = np.clip((bits - cfg.pdq_full) / (cfg.pdq_none - cfg.pdq_full), 0.0, 1.0)
    sim = np.zeros((len(q.pdq), len(s.pdq)), np.float32)
    sim[np.ix_(qi, si)] = np.where(bits <= cfg.pdq_none, PDQ_SURE_SIM - (PDQ_SURE_SIM - cfg.visual_lo) * fall, 0.0)
    return sim
