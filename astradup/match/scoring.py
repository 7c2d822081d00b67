"""Per-modality evidence that a query and one candidate video are copies of each other.

Each score is a raw similarity mapped to [0, 1] by a calibration measured on the dev benchmark
(ScoreConfig), so that the fusion weights mean what they say.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from astradup.config import ScoreConfig, SegmentConfig
from astradup.match.align import align_pair
from astradup.features.audio import chromaprint_similarity
from astradup.features.metadata import metadata_similarity
from astradup.features.phash import hamming_matrix
from astradup.records import SegmentMatch, VideoFeatures


def calibrate(x: float, lo: float, hi: float) -> float:
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


def informative(f: VideoFeatures) -> np.ndarray:
    """Row mask of the frames that carry evidence (not blank); all frames if every one is blank."""
    mask = np.ones(len(f.timestamps) or len(f.embeddings), bool)
    blank = [i for i in f.meta.get("blank_frames", []) if i < len(mask)]
    mask[blank] = False
    return mask if mask.any() else np.ones_like(mask)


def mutual_coverage(sim: np.ndarray) -> float:
    """Mean best-match similarity in the weaker of the two directions.

    A duplicate covers the other video and is covered by it; an excerpt inside other content
    (or a compilation) covers only one way, and is a partial copy, not a whole-video duplicate:
    the segment search reports those.
    """
    if sim.size == 0:
        return 0.0
    return min(float(sim.max(axis=1).mean()), float(sim.max(axis=0).mean()))


@dataclass(frozen=True)
class PairEvidence:
    """The raw and calibrated evidence for one (query, candidate) pair."""

    visual: float
    audio: float | None
    metadata: float
    emb_raw: float
    phash_raw: float
    chroma_raw: float | None
    audio_vec_raw: float | None
    mirrored: bool

    def modality_scores(self) -> dict[str, float | None]:
        return {"visual": self.visual, "audio": self.audio, "metadata": self.metadata}


def _agree(primary: float, secondary: float) -> float:
    """The secondary signal may lift the primary halfway towards itself but never pull it down.

    Embeddings survive flips, crops and overlays that break pHash and Chromaprint, so a weak
    secondary score is no evidence against a copy; a strong one confirms an exact copy.
    """
    return max(primary, 0.5 * (primary + secondary))


def pair_evidence(q: VideoFeatures, s: VideoFeatures, cfg: ScoreConfig,
                  q_mirror: np.ndarray | None = None) -> PairEvidence:
    emb_raw, mirrored = 0.0, False
    qm, sm = informative(q), informative(s)
    if len(q.embeddings) and len(s.embeddings):
        emb_raw = mutual_coverage((q.embeddings @ s.embeddings.T)[np.ix_(qm, sm)])
        if q_mirror is not None and len(q_mirror):
            flipped = mutual_coverage((q_mirror @ s.embeddings.T)[np.ix_(qm, sm)])
            if flipped > emb_raw:
                emb_raw, mirrored = flipped, True
    phash_raw = 0.0
    if len(q.phash) and len(s.phash):
        phash_raw = mutual_coverage((1.0 - hamming_matrix(q.phash, s.phash) / 256.0)[np.ix_(qm, sm)])
    visual = _agree(calibrate(emb_raw, cfg.emb_lo, cfg.emb_hi),
                    calibrate(phash_raw, cfg.phash_lo, cfg.phash_hi))

    audio = chroma_raw = vec_raw = None
    if q.has_audio and s.has_audio:
        chroma_raw = chromaprint_similarity(q.chromaprint, s.chromaprint)
        vec_raw = 0.0
        if len(q.audio_vectors) and len(s.audio_vectors):
            vec_raw = mutual_coverage(q.audio_vectors @ s.audio_vectors.T)
        audio = _agree(calibrate(chroma_raw, cfg.chroma_lo, cfg.chroma_hi),
                       calibrate(vec_raw, cfg.audio_vec_lo, cfg.audio_vec_hi))
    meta = metadata_similarity(q.meta, s.meta)
    return PairEvidence(visual, audio, meta, emb_raw, phash_raw, chroma_raw, vec_raw, mirrored)


def pair_segments(q: VideoFeatures, s: VideoFeatures, cfg: SegmentConfig,
                  q_mirror: np.ndarray | None = None) -> list[SegmentMatch]:
    """Copied segments between a query and one candidate, from frame and audio-window similarities."""
    vsim = None
    if len(q.embeddings) and len(s.embeddings):
        vsim = q.embeddings @ s.embeddings.T
        if q_mirror is not None and len(q_mirror):
            vsim = np.maximum(vsim, q_mirror @ s.embeddings.T)
        vsim[~informative(q), :] = 0.0  # black/flat frames match everything: no evidence
        vsim[:, ~informative(s)] = 0.0
    asim = None
    if len(q.audio_vectors) and len(s.audio_vectors):
        asim = q.audio_vectors @ s.audio_vectors.T
    cell = float(np.median(np.diff(q.timestamps))) if len(q.timestamps) > 1 else 1.0
    return align_pair(q.video_id, s.video_id, q.timestamps, s.timestamps, vsim,
                      q.audio_windows, s.audio_windows, asim, cfg, cell=cell,
                      q_valid=informative(q) if len(q.embeddings) else None,
                      s_valid=informative(s) if len(s.embeddings) else None,
                      embeddings=(q.embeddings, s.embeddings) if vsim is not None else None)
