"""The per-second descriptor of the VSC22 descriptor track: a sampled frame's embedding joined by
the audio heard at that second.

The track ranks every (query, reference) pair by the max inner product of their per-second
descriptors, across all queries at once. Frame embeddings alone give a copy whose picture was
replaced or edited beyond recognition (an audio-only copy, a soundtrack reused under other
footage, a crop + flip + speed chain) the score of unrelated footage, while its audio still
matches. Joining the audio window vector (features/audio.py) to each row lets either modality
lift a pair, and both together lift it most. Measured on the exported files
(``benchmarks/descriptor_files.py``, docs/performance.md), normalised, frames alone -> joined at
share 0.4: dev40 0.898 -> 0.944, the hard variant's seeds 5-8 pooled 0.801 -> 0.869.

Row ``t`` is ``[sqrt(1 - s) * frame_t, sqrt(s) * audio_t]``: the inner product of two rows is
``(1 - s) * frame cosine + s * audio cosine``, one number that both modalities move, in [-1, 1].
``audio_t`` is the window whose centre lies nearest ``t``; zeros where none lies within
``REACH_S`` (no audio track, or a frame past the last window), so such a row scores on its frame
alone, scaled by ``1 - s``.

Score normalisation (match/score_norm.py) runs per modality: a query row's background is
``(1 - s) * bg_frames + s * bg_audio``, each the k-th best per-video similarity in its own
modality. A row whose picture is generic and whose audio is distinctive (or the reverse) is then
discounted only for the generic part; one background of the joined rows let a video that is
the 2nd best on both modalities at different rows set neither (pooled hard 0.837 against 0.841).
"""
from __future__ import annotations

import numpy as np

from astradup.features.basis import project_rows
from astradup.match.motion import nearest
from astradup.match.score_norm import Background
from astradup.records import VideoFeatures

DEFAULT_AUDIO_SHARE = 0.4
REACH_S = 3.0  # a window centre this far from a frame still describes it (5 s windows, 1 s apart)


def audio_at(times: np.ndarray, windows: np.ndarray, vectors: np.ndarray, dim: int,
             reach: float = REACH_S) -> np.ndarray:
    """float32 [T, dim]: per time, the vector of the window whose centre is nearest; zeros where
    no centre lies within ``reach`` seconds or the video has no windows."""
    t = np.asarray(times, np.float64).reshape(-1)
    out = np.zeros((len(t), dim), np.float32)
    v = np.asarray(vectors, np.float32)
    w = np.asarray(windows, np.float64).reshape(-1, 2)
    if not len(t) or not len(v) or len(w) != len(v):
        return out
    if v.shape[1] != dim:
        raise ValueError(f"audio vectors are {v.shape[1]}-d, the descriptor's audio part is {dim}-d")
    centres = w.mean(axis=1)
    order = np.argsort(centres, kind="stable")
    c = centres[order]
    pick = nearest(c, t) if len(c) > 1 else np.zeros(len(t), int)  # O(T log W): no [T, W] matrix
    near = np.abs(c[pick] - t) <= reach
    out[near] = v[order[pick[near]]]
    return out


def rows_of(f: VideoFeatures, audio_dim: int, basis: np.ndarray | None = None,
            blank: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(frames [T, D], audio [T, audio_dim]) of a video's sampled frames; ``basis``: frames
    projected on it and re-normalised (features/descriptor.py ``basis_within``); ``blank`` (the
    record's ``blank_rows()``): black or flat pictures, whose frame part is zero: every black frame
    looks like every other, but the second it stands for still has its sound (an audio-only copy
    over a black picture). Common content (an intro many videos share) keeps its picture: score
    normalisation already discounts it, and leaving it out lost copies of sources that share
    footage (dev40 0.983 -> 0.944, exported files)."""
    emb = np.asarray(f.embeddings, np.float32)
    width = basis.shape[1] if basis is not None else (emb.shape[1] if emb.ndim == 2 else 0)
    if not len(emb):
        return np.zeros((0, width), np.float32), np.zeros((0, audio_dim), np.float32)
    times = np.asarray(f.timestamps, np.float64).reshape(-1)
    frames = project_rows(emb, basis)
    if blank is not None:  # a new array: the rows may be a view of the record's own
        frames = np.where(np.asarray(blank, bool)[:, None], np.float32(0.0), frames).astype(np.float32)
    audio = audio_at(times, f.audio_windows, f.audio_vectors, audio_dim) if audio_dim else \
        np.zeros((len(frames), 0), np.float32)  # frames alone: the sound is not read at all
    return frames, audio


def join(frames: np.ndarray, audio: np.ndarray, share: float) -> np.ndarray:
    """[T, D + Da] rows whose inner products weigh frames by ``1 - share`` and audio by ``share``
    (``share`` 0: the frames as they are)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"audio share must be in [0, 1], got {share}")
    frames = np.asarray(frames, np.float32)
    if share == 0.0:
        return frames
    return np.hstack([np.sqrt(1.0 - share) * frames, np.sqrt(share) * np.asarray(audio, np.float32)]
                     ).astype(np.float32)


class JointBackground:
    """A query's per-row background for joined rows: one ``score_norm.Background`` per modality,
    fed the library video by video, combined by the shares (see the module doc)."""

    def __init__(self, frames: np.ndarray, audio: np.ndarray, k: int = 2) -> None:
        self.frames = Background(frames, k)
        self.audio = Background(audio, k)

    def add(self, frames: np.ndarray, audio: np.ndarray) -> None:
        self.frames.add(frames)
        if np.any(audio):  # a video without sound is no background for audio (its rows are zeros)
            self.audio.add(audio)

    def value(self, share: float) -> np.ndarray:
        return ((1.0 - share) * self.frames.value() + share * self.audio.value()).astype(np.float32)
