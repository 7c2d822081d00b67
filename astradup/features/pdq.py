"""Per-frame PDQ hashes (Meta's image hash, the one vPDQ runs on every sampled frame).

Why beside our own pHash: PDQ is what ThreatExchange's vPDQ tools exchange, so storing it lets a
library answer a vPDQ hash file (``search --hashes``) and hand its own hashes out
(``export-hashes --format vpdq``) without decoding a video again. It is computed by the
``pdqhash`` package (Meta's C++ PDQ, built from source) on the frames the pHash already uses, so
it costs one extra pass over frames that are in memory anyway: about 1.5 ms a 224 px frame, +38% on
the CPU features alone and +5% on a video's whole ingest work in one process (decode, CPU features,
SSCD on the CPU; six 30 s clips, median of three interleaved runs, two busy cores).

Bytes are stored in the order of vPDQ's 64-hex text: ``bytes.fromhex(hex)`` is the stored row,
``row.hex()`` the text, so a file's hash and a stored one compare without any bit shuffling.
"""
from __future__ import annotations

import numpy as np

from astradup.records import PDQ_BYTES

MIN_SIDE = 5  # vPDQ's own floor: a smaller picture gets an all-zero hash of quality 0


def pdq_frames(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [T, 32] hashes, uint8 [T] quality 0-100) of RGB frames uint8 [T, H, W, 3]."""
    import pdqhash  # C++ extension: imported where it is used, so modules that only read records need no build

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames [T, H, W, 3], got {frames.shape}")
    t, h, w, _ = frames.shape
    hashes = np.zeros((t, PDQ_BYTES), np.uint8)
    quality = np.zeros((t,), np.uint8)
    if h < MIN_SIDE or w < MIN_SIDE:
        return hashes, quality
    for i in range(t):
        # pdqhash returns the 256 bits most significant first (the hex text's order); packbits keeps it.
        vec, q = pdqhash.compute(np.ascontiguousarray(frames[i], dtype=np.uint8))
        hashes[i] = np.packbits(np.asarray(vec, np.uint8))
        quality[i] = min(max(int(q), 0), 100)
    return hashes, quality


def empty_pdq() -> tuple[np.ndarray, np.ndarray]:
    """What a record without PDQ hashes holds (indexed before they existed, or a failed file)."""
    return np.zeros((0, PDQ_BYTES), np.uint8), np.zeros((0,), np.uint8)
