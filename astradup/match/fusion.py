"""Fusion of per-modality scores into one score, a confidence and a label.

Kept free of Ray/Milvus and of feature extraction so thresholds and weights can be tested
exhaustively and tuned from measurements alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from astradup.config import FusionConfig
from astradup.records import Label

LABEL_DUPLICATE = Label.DUPLICATE
LABEL_NEAR = Label.NEAR_DUPLICATE
LABEL_SIMILAR = Label.SIMILAR
LABEL_NONE = Label.NONE
MODALITIES = ("visual", "audio", "metadata")


@dataclass(frozen=True)
class Fused:
    score: float
    confidence: float
    label: Label
    review: bool
    weights: dict[str, float]
    notes: tuple[str, ...]


def label_for(score: float, cfg: FusionConfig) -> Label:
    """The strongest label whose floor (its FusionConfig setting) the fused score reaches."""
    for label in Label.reportable():
        if score >= getattr(cfg, label.floor_setting):
            return label
    return Label.NONE


def effective_weights(scores: dict[str, float | None], cfg: FusionConfig) -> dict[str, float]:
    """Weights of the modalities present, renormalised to sum to 1.

    A modality that is absent (None: e.g. a video without an audio track) gives its weight to the
    others in proportion, rather than counting as a disagreement.
    """
    base = {"visual": cfg.visual, "audio": cfg.audio, "metadata": cfg.metadata}
    present = {m: w for m, w in base.items() if scores.get(m) is not None and w > 0}
    total = sum(present.values())
    if total <= 0:
        raise ValueError("no modality with a positive weight has a score")
    return {m: w / total for m, w in present.items()}


def confidence_of(scores: dict[str, float], weights: dict[str, float]) -> float:
    """1 when the modalities agree, 0 when they disagree as much as scores in [0, 1] can.

    The weighted standard deviation of scores in [0, 1] is at most 0.5, hence the factor 2.
    Metadata is excluded because it agrees with almost anything of the same length and would
    hide a real disagreement between sight and sound; it still counts when it is all there is
    besides one other modality.
    """
    keys = [m for m in weights if m != "metadata"] if len([m for m in weights if m != "metadata"]) >= 2 \
        else list(weights)
    if len(keys) < 2:
        return 1.0
    w = np.array([weights[m] for m in keys], dtype=np.float64)
    x = np.array([scores[m] for m in keys], dtype=np.float64)
    w = w / w.sum()
    mean = float((w * x).sum())
    std = float(np.sqrt((w * (x - mean) ** 2).sum()))
    return float(np.clip(1.0 - 2.0 * std, 0.0, 1.0))


def fuse(scores: dict[str, float | None], cfg: FusionConfig) -> Fused:
    weights = effective_weights(scores, cfg)
    present = {m: float(scores[m]) for m in weights}  # type: ignore[arg-type]
    fused = float(sum(weights[m] * present[m] for m in weights))
    conf = confidence_of(present, weights)
    label = label_for(fused, cfg)
    notes = tuple(f"no {m} evidence: its weight was redistributed" for m in MODALITIES
                  if m not in weights and getattr(cfg, m) > 0)
    review = label != LABEL_NONE and conf < cfg.review_confidence
    return Fused(fused, conf, label, review, weights, notes)
