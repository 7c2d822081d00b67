"""match/frame_hashes.py: PDQ distances as frame similarities, and what they add to a pair's segments."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from astradup.config import SegmentConfig
from astradup.features.phash import hamming_matrix
from astradup.match.frame_hashes import PDQ_MIN_QUALITY, PDQ_SURE_SIM, mirrored, pdq_similarity
from astradup.match.scoring import pair_segments
from astradup.records import VideoFeatures

CFG = SegmentConfig()
RNG = np.random.default_rng(21)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def video(vid: str, emb: np.ndarray, pdq: np.ndarray | None = None, quality: np.ndarray | None = None,
          **meta) -> VideoFeatures:
    t = len(emb)
    pdq = RNG.integers(0, 256, (t, 32), dtype=np.uint8) if pdq is None else pdq
    quality = np.full(t, 100, np.uint8) if quality is None else quality
    return VideoFeatures(vid, f"/v/{vid}.mp4", np.arange(t, dtype=np.float32) + 0.5, emb,
                         RNG.integers(0, 256, (t, 32), dtype=np.uint8), np.zeros((0, 2), np.float32),
                         np.zeros((0, 4), np.float32), np.zeros(0, np.uint32), 8.0, {"duration": float(t), **meta},
                         pdq=pdq, pdq_quality=quality)


def flip_bits(h: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``h`` with ``n`` of its 256 bits flipped."""
    bits = np.unpackbits(h)
    bits[rng.choice(256, n, replace=False)] ^= 1
    return np.packbits(bits)


def test_a_flipped_pictures_pdq_is_the_masked_hash_of_the_picture():
    """The mirrored query's hashes come from its own: a flip negates the odd horizontal frequencies."""
    from astradup.features.pdq import pdq_frames

    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:224, 0:398]
    img = np.stack([np.sin(xx / 23.0 + c) * np.cos(yy / 17.0 - c) * 100 + 128 for c in (0.0, 0.7, 1.9)], -1)
    img = np.clip(img + rng.normal(0, 8, img.shape) + (xx[..., None] > 250) * 60, 0, 255).astype(np.uint8)
    hashes, quality = pdq_frames(np.stack([img, img[:, ::-1]]))
    assert (quality >= PDQ_MIN_QUALITY).all()
    plain = hamming_matrix(hashes[:1], hashes[1:])[0, 0]
    masked = hamming_matrix(mirrored(hashes[:1]), hashes[1:])[0, 0]
    assert plain > 80 and masked < 24


def test_distance_maps_from_a_sure_match_to_no_evidence():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (1, 32), dtype=np.uint8)
    near = [flip_bits(base[0], n, rng) for n in (0, int(CFG.pdq_full), 70, int(CFG.pdq_none), 120)]
    q = video("q", unit(rng.normal(size=(1, 8))), pdq=base)
    s = video("s", unit(rng.normal(size=(5, 8))), pdq=np.stack(near))
    sim = pdq_similarity(q, s, CFG)[0]
    mid = PDQ_SURE_SIM - (PDQ_SURE_SIM - CFG.visual_lo) * (70 - CFG.pdq_full) / (CFG.pdq_none - CFG.pdq_full)
    np.testing.assert_allclose(sim, [PDQ_SURE_SIM, PDQ_SURE_SIM, mid, CFG.visual_lo, 0.0], rtol=1e-6)


def test_a_mirrored_copy_matches_and_untrusted_or_missing_hashes_do_not():
    rng = np.random.default_rng(4)
    src = rng.integers(0, 256, (4, 32), dtype=np.uint8)
    s = video("s", unit(rng.normal(size=(4, 8))), pdq=src, quality=np.array([100, 100, 30, 100], np.uint8),
              blank_frames=[3])
    q = video("q", unit(rng.normal(size=(4, 8))), pdq=mirrored(src))
    sim = pdq_similarity(q, s, CFG)
    # frame 2's hash is below PDQ's quality floor (a smooth picture) and frame 3 is blank
    np.testing.assert_allclose(np.diag(sim), [PDQ_SURE_SIM, PDQ_SURE_SIM, 0.0, 0.0])
    old = dataclasses.replace(s, pdq=np.zeros((0, 32), np.uint8), pdq_quality=np.zeros(0, np.uint8))
    assert pdq_similarity(q, old, CFG) is None  # indexed before PDQ was stored
    short = dataclasses.replace(s, pdq=src[:3], pdq_quality=np.full(3, 100, np.uint8))
    assert pdq_similarity(q, short, CFG) is None  # hashes not one per frame: not read at all
    assert pdq_similarity(q, s, dataclasses.replace(CFG, pdq_none=0.0)) is None  # off


def _recoloured_copy(same_hashes: bool):
    """A 12 s copy (query 10-22 s of source 5-17 s) that SSCD reads under 0.5 (a grey copy of a
    colourful shot): under the cell threshold. Its frames' PDQ hashes lie 30 bits from the source's
    when ``same_hashes``, and are unrelated otherwise."""
    rng = np.random.default_rng(5)
    se = rng.normal(size=(30, 32))
    qe = rng.normal(size=(40, 32))
    copied = unit(se[5:17])
    shift = rng.normal(size=32)
    shift -= np.linalg.lstsq(copied.T, shift, rcond=None)[0] @ copied  # away from every copied frame
    shift *= 2.5 / np.linalg.norm(shift)  # one recolouring moves every frame alike ...
    qe[10:22] = copied + shift + 0.05 * rng.normal(size=(12, 32))  # ... so it still moves with its source
    src_pdq = rng.integers(0, 256, (30, 32), dtype=np.uint8)
    q_pdq = rng.integers(0, 256, (40, 32), dtype=np.uint8)
    if same_hashes:
        q_pdq[10:22] = [flip_bits(h, 30, rng) for h in src_pdq[5:17]]
    return video("q", unit(qe), pdq=q_pdq), video("s", unit(se), pdq=src_pdq)


def test_a_copy_sscd_reads_weakly_is_found_through_its_pdq_hashes():
    q, s = _recoloured_copy(same_hashes=True)
    cells = (q.embeddings @ s.embeddings.T)[np.arange(10, 22), np.arange(5, 17)]
    assert cells.max() < CFG.visual_lo + CFG.cell_threshold * (CFG.visual_hi - CFG.visual_lo)
    (m,) = pair_segments(q, s, CFG)
    assert (m.q_start, m.q_end) == (10.0, 22.0) and (m.s_start, m.s_end) == pytest.approx((5.0, 17.0))
    assert m.score >= CFG.min_score
    assert pair_segments(q, s, dataclasses.replace(CFG, pdq_none=0.0)) == []  # SSCD alone: nothing
    q_unrelated, s2 = _recoloured_copy(same_hashes=False)
    assert pair_segments(q_unrelated, s2, CFG) == []
