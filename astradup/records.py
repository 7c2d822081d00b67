"""Plain records that flow through every stage (decode -> features -> store -> match -> report).

They carry numpy arrays and builtins only, so each stage can be tested without Ray or Milvus.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

class Label(StrEnum):
    """A match's label, strongest first. A StrEnum, so it is its own text in JSON, CSV and Parquet
    and compares equal to it; each label knows its rank and the fusion setting that sets its floor."""

    DUPLICATE = "duplicate"
    NEAR_DUPLICATE = "near-duplicate"
    SIMILAR = "similar"
    NONE = "none"

    @property
    def rank(self) -> int:
        """3 for duplicate ... 0 for none: "at least near-duplicate" is ``rank >= 2``."""
        return len(Label) - 1 - list(Label).index(self)

    @property
    def floor_setting(self) -> str | None:
        """The FusionConfig field holding the least fused score with this label (None for none)."""
        return None if self is Label.NONE else self.value.replace("-", "_")

    @classmethod
    def reportable(cls) -> tuple["Label", ...]:
        """The labels that make a pair worth listing, strongest first."""
        return tuple(lab for lab in cls if lab is not cls.NONE)


PDQ_BYTES = 32  # a PDQ hash (vPDQ's per-frame hash): 256 bits
STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_DELETED = "deleted"


@dataclass(frozen=True)
class VideoRef:
    """What to read. ``video_id`` is a content hash, so the same bytes always get the same id."""

    video_id: str
    uri: str
    size: int
    mtime: float = 0.0


@dataclass
class Decoded:
    """Frames sampled at ``fps`` and mono PCM; ``audio`` is None for a file without an audio track."""

    ref: VideoRef
    timestamps: np.ndarray  # float32 [T] seconds
    frames: np.ndarray  # uint8 [T, H, W, 3] RGB
    audio: np.ndarray | None  # float32 [N] mono in [-1, 1]
    sample_rate: int
    meta: dict[str, Any]


@dataclass
class VideoFeatures:
    """Every feature of one video: the single record stored in a Parquet shard row.

    ``status``/``error`` make a failed file a first-class record, so a backfill can say which
    file failed and why without losing the rest.
    """

    video_id: str
    uri: str
    timestamps: np.ndarray  # float32 [T]
    embeddings: np.ndarray  # float32 [T, D], L2-normalised rows
    phash: np.ndarray  # uint8 [T, 32] (256 bits per frame)
    audio_windows: np.ndarray  # float32 [W, 2] (start, end) seconds
    audio_vectors: np.ndarray  # float32 [W, Da], L2-normalised rows (window KNN)
    chromaprint: np.ndarray  # uint32 [N] raw Chromaprint sub-fingerprints of the whole track
    chromaprint_hz: float  # sub-fingerprints per second of audio
    meta: dict[str, Any]
    status: str = STATUS_OK
    error: str = ""
    # PDQ of the same frames as ``phash`` (features/pdq.py), vPDQ's per-frame hash: uint8 [T, 32] and
    # its quality uint8 [T] (0-100). Empty ([0, 32] / [0]) when missing: a record indexed before
    # PDQ was stored, or a failed file. Defaults so every older constructor still builds a record.
    pdq: np.ndarray = field(default_factory=lambda: np.zeros((0, 32), np.uint8))
    pdq_quality: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.uint8))

    @property
    def has_pdq(self) -> bool:
        return len(self.pdq) > 0 and len(self.pdq) == len(self.pdq_quality)

    @property
    def has_audio(self) -> bool:
        return len(self.chromaprint) > 0 or len(self.audio_windows) > 0

    def blank_rows(self) -> np.ndarray:
        """[T] mask of the frames the decoder found blank (black or flat: ``meta["blank_frames"]``,
        features/extract.py); indices outside the frames are ignored."""
        n = len(self.timestamps) or len(self.embeddings)
        mask = np.zeros(n, bool)
        mask[[int(i) for i in self.meta.get("blank_frames", []) if 0 <= int(i) < n]] = True
        return mask

    @classmethod
    def failed(cls, video_id: str, uri: str, error: str, meta: dict[str, Any] | None = None,
               dim: int = 0) -> "VideoFeatures":
        return cls(
            video_id=video_id, uri=uri,
            timestamps=np.zeros((0,), np.float32),
            embeddings=np.zeros((0, dim), np.float32),
            phash=np.zeros((0, 32), np.uint8),
            audio_windows=np.zeros((0, 2), np.float32),
            audio_vectors=np.zeros((0, 0), np.float32),
            chromaprint=np.zeros((0,), np.uint32),
            chromaprint_hz=0.0,
            meta=dict(meta or {}), status=STATUS_FAILED, error=error,
        )


@dataclass(frozen=True)
class CodeReading:
    """One reading of a soundtrack's Chromaprint codes: uint32 items and each item's time on the
    track's own axis (seconds). ``shifted``: the track read at another pitch
    (features/pitch_variants.py), which match/audio_confirm.py trusts a little less."""

    codes: np.ndarray
    times: np.ndarray
    shifted: bool = False


@dataclass(frozen=True)
class SegmentMatch:
    """One copied stretch: ``query_id`` from ``q_start`` to ``q_end`` s is ``source_id`` from
    ``s_start`` to ``s_end`` s. The one segment record of every stage (alignment, search, dedup,
    the copy-localisation CSVs and their metrics), as VSC22 has one ``Match``; ``score`` is 1.0
    for a truth row. ``extra`` holds a CSV's other columns as text (``transform``...); it is
    compared but not hashed (a dict is unhashable), so a round trip that lost a column would not
    compare equal."""

    query_id: str
    q_start: float
    q_end: float
    source_id: str
    s_start: float
    s_end: float
    score: float = 1.0
    modalities: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict, hash=False)

    def as_row(self) -> dict[str, Any]:
        """The fields for JSON: ``extra`` only when it holds a column (a found segment has none)."""
        d = dict(self.__dict__)
        if not self.extra:
            del d["extra"]
        return d


@dataclass(frozen=True)
class AudioCopy(SegmentMatch):
    """The soundtrack of one video copied whole into another whose picture differs (music reuse).

    A SegmentMatch (query and source intervals from the audio alignment), so every reader of copied
    segments can list it; its own class so a reader can say "audio copy" rather than "partial copy".
    """

    FLAG = "audio copy"

    def note(self) -> str:
        return (f"{self.FLAG} q {self.q_start:.1f}-{self.q_end:.1f} s = "
                f"s {self.s_start:.1f}-{self.s_end:.1f} s")

    def covers(self, sg: SegmentMatch) -> bool:
        """Whether a sound-only segment is this same stretch of soundtrack (list it once)."""
        inter = max(0.0, min(sg.q_end, self.q_end) - max(sg.q_start, self.q_start))
        return tuple(sg.modalities) == ("audio",) and inter >= 0.5 * max(sg.q_end - sg.q_start, 1e-6)

    def to_dict(self) -> dict[str, Any]:
        return {"q_start": self.q_start, "q_end": self.q_end, "s_start": self.s_start, "s_end": self.s_end,
                "score": self.score}


@dataclass(frozen=True)
class VideoMatch:
    """A ranked answer: one indexed video that matches the query, with the evidence per modality."""

    source_id: str
    source_uri: str
    scores: dict[str, float]  # modality -> score in [0, 1]; absent modality missing
    fused: float
    confidence: float
    label: str  # a Label (records.Label), or its text when read back from a shard or a job's output
    review: bool
    notes: tuple[str, ...] = ()
    segments: tuple[SegmentMatch, ...] = field(default_factory=tuple)
    audio_copy: AudioCopy | None = None  # the soundtrack is a whole copy while the picture differs
    decision: str | None = None  # a reviewer's verdict on the pair ("confirmed"); set by reviews.Verdicts

    @property
    def reportable(self) -> bool:
        """Whether a search that leaves out label none keeps it: a label, a copied segment, or a
        copied soundtrack (the label stays what fusion says; the user still needs to see it)."""
        return self.label != Label.NONE or bool(self.segments) or self.audio_copy is not None

    def copied(self) -> list[SegmentMatch]:
        """Every copied stretch to list: the audio copy first, then the segments it does not repeat."""
        if self.audio_copy is None:
            return list(self.segments)
        return [self.audio_copy] + [sg for sg in self.segments if not self.audio_copy.covers(sg)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_id": self.source_id, "source_uri": self.source_uri,
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "fused": round(self.fused, 4), "confidence": round(self.confidence, 4),
            "label": self.label, "review": self.review, "notes": list(self.notes),
            "segments": [s.as_row() for s in self.segments],
            "audio_copy": None if self.audio_copy is None else self.audio_copy.to_dict(),
            "decision": self.decision,
        }
