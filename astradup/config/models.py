"""The config model: one validated pydantic dataclass per section, and ``Config`` holding them.

Every range, choice and cross-field rule lives here, next to the setting it constrains, so YAML,
environment, overrides and code that builds a section (``DecodeConfig(decoder=...)``) are all
checked by the same rules and refused with the same one-line ConfigError.
"""
import dataclasses
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, Strict, field_validator, model_validator

from astradup.config.types import (SECTION_NAMES, Bool, Count, CountOrZero, NonEmpty, NonNegative, Number,
                                   PitchShifts, Port, Positive, Share, Text, rule, section)
from astradup.uris import BadUri, is_lite_uri, split_s3

DECODERS = ("decord", "pyav_fast")
KINDS = ("sscd_onnx", "open_clip", "hf_clip")  # embedder.kind
DEVICES = ("auto", "cpu", "cuda")  # embedder.device
CONSISTENCY_LEVELS = ("Strong", "Session", "Bounded", "Eventually")  # search.consistency (Milvus)
WRITERS = ("auto", "driver", "workers")  # pipeline.writers
PHASH_MODES = ("auto", "on", "off")  # vectors.phash
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")  # log.level


def _lo_below_hi(obj: Any, *pairs: tuple[str, str]) -> None:
    """A calibration (x - lo) / (hi - lo) needs lo < hi: equal would divide by zero, reversed
    would score copies below unrelated content."""
    for lo, hi in pairs:
        if not getattr(obj, lo) < getattr(obj, hi):
            raise rule(f"must be below {hi} ({getattr(obj, hi):g})", lo, getattr(obj, lo))


@section
class DecodeConfig:
    fps: Positive = 1.0  # frames sampled per second of video
    frame_size: Count = 224  # frames are resized once to frame_size x frame_size
    sample_rate: Count = 11025  # mono PCM rate for Chromaprint and MFCC
    max_seconds: NonNegative = 0.0  # 0 = whole file; otherwise only the first max_seconds
    # Frame decoder: decord (every frame decoded) | pyav_fast (PyAV, one thread, skipping non-reference
    # frames and H.264 deblocking: a third less CPU, a sample may get a slightly earlier, blockier
    # frame; decord, then ffmpeg, take over on failure). Index and queries must use the same value.
    decoder: Literal[DECODERS] = "decord"
    # Limits checked on the probe before any frame is decoded (0 = none): they bound the memory a
    # picture costs (a 16000x16000 frame is 384 MB of YUV before any copy) and the work per second
    # of media. 8K (8192x4320) and 240 fps cover real cameras; a file over either is refused.
    max_pixels: CountOrZero = 8192 * 4320
    max_fps: NonNegative = 240.0
    # Wall-time budget of one file's decode (frames and audio), 0 = none. Indexing leaves it off
    # (a three-hour file legitimately takes minutes); the HTTP service sets its own for queries.
    max_decode_seconds: NonNegative = 0.0


@section
class EmbedderConfig:
    kind: Literal[KINDS] = "sscd_onnx"
    model: NonEmpty = "sscd_distilled"  # sscd_onnx: sscd_distilled | sscd ; open_clip: model name
    pretrained: Text = ""  # open_clip: pretrained tag or local checkpoint path
    batch_size: Count = 32
    device: Literal[DEVICES] = "auto"
    # SSCD input: shorter side in pixels. 224 = the decoded frames as they are (no upscale):
    # 1.85x less CPU per frame than SSCD's recommended 288, with dev-benchmark scores within 0.01
    # (docs/performance.md). Index and queries must use the same value: changing it means re-indexing.
    short_side: Count = 224
    query_flip: Bool = False  # also embed mirrored query frames (for CLIP; SSCD is mirror-invariant)
    # Frame descriptor = the model's output projected on its top singular vectors (fitted by
    # scripts/fit_projection.py, shipped for sscd_onnx/sscd_distilled). 256 halves the shards'
    # frame bytes (index 3.7 -> 2.8 MB/h) but moved the dev40 scores by more than 0.01 (LCT
    # 0.978 -> 0.967, an audio-only copy lost: docs/performance.md), so the default keeps the
    # full output (0). Used only when the basis is for the configured model. Index and queries
    # must agree: changing it means indexing the videos again.
    pca_dims: CountOrZero = 0
    pca_file: NonEmpty = "builtin"  # builtin (astradup/data/projection.npz) or a path to such a file


@section
class AudioConfig:
    window: Positive = 5.0  # seconds per audio window
    step: Positive = 1.0  # window step for indexed videos
    query_step: Positive = 0.5  # window step for queries (0.5 beat 1.0 on the dev benchmark sweep)
    # MFCCs are the DCT of 40 mel bands (features/mfcc.py): no more than 40 (more broke long tracks)
    n_mfcc: Annotated[int, Strict(), Field(ge=1, le=40)] = 13
    # Queries also read their audio this many semitones higher/lower (features/pitch_variants.py:
    # pitch-shifted soundtracks; [] = off) and align with the best reading; each shift costs a query
    # one more Chromaprint + MFCC pass. Chromaprint's chroma tells shifts 0.25 semitone apart, so the
    # grid is that fine; search.pitch_knn names the few of them that also ask the KNN.
    query_pitch: PitchShifts = (-2.5, -2.25, -2.0, -1.75, -1.5, -1.25, -1.0, -0.75,
                                0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5)


@section
class FusionConfig:
    """Weights of the modality scores (renormalised over the modalities present, match/fusion.py)
    and the fused score from which each label applies."""

    visual: Share = 0.65
    audio: Share = 0.25
    metadata: Share = 0.10
    duplicate: Share = 0.95
    near_duplicate: Share = 0.85
    similar: Share = 0.70
    review_confidence: Share = 0.6  # below this confidence a match goes to the review queue

    @model_validator(mode="after")
    def _weights_and_labels(self) -> "FusionConfig":
        if self.visual + self.audio + self.metadata <= 0:
            raise rule("all three weights are 0: at least one of visual, audio, metadata must be > 0",
                       "visual", self.visual)
        # label_for tests duplicate first: a lower "duplicate" than "near_duplicate" would hide a label
        if self.near_duplicate > self.duplicate:
            raise rule(f"must be <= duplicate ({self.duplicate:g})", "near_duplicate", self.near_duplicate)
        if self.similar > self.near_duplicate:
            raise rule(f"must be <= near_duplicate ({self.near_duplicate:g})", "similar", self.similar)
        return self


@section
class ScoreConfig:
    """Calibration of raw similarities to [0, 1] modality scores: (x - lo) / (hi - lo), clipped.

    lo is what unrelated content typically reaches, hi what a faithful copy reaches; both were chosen
    by measurement on the dev benchmark (see README).
    """

    emb_lo: Number = 0.35  # mean best-match inner product of frame embeddings
    emb_hi: Number = 0.75
    phash_lo: Number = 0.70  # 1 - hamming/256 of best-matching frames
    phash_hi: Number = 0.92
    chroma_lo: Number = 0.65  # fraction of equal Chromaprint bits at the best offset
    chroma_hi: Number = 0.85
    audio_vec_lo: Number = 0.55  # mean best-match inner product of audio window vectors
    audio_vec_hi: Number = 0.90

    @model_validator(mode="after")
    def _ordered(self) -> "ScoreConfig":
        _lo_below_hi(self, ("emb_lo", "emb_hi"), ("phash_lo", "phash_hi"), ("chroma_lo", "chroma_hi"),
                     ("audio_vec_lo", "audio_vec_hi"))
        return self


@section
class SegmentConfig:
    """Temporal alignment of frame/window matches into copied segments (see match/align.py)."""

    visual_lo: Number = 0.30  # per-frame embedding inner product -> evidence in [0, 1]
    visual_hi: Number = 0.80
    audio_lo: Number = 0.55  # per-window audio vector inner product -> evidence in [0, 1]
    audio_hi: Number = 0.85
    cell_threshold: Share = 0.5  # evidence from which a (query t, source t) cell counts as a match
    # source s per query s (speed changes)
    slopes: Annotated[tuple[Positive, ...], Field(min_length=1)] = (0.8, 0.87, 0.91, 0.95, 1.0, 1.05, 1.1, 1.15, 1.25)
    offset_tol: NonNegative = 1.5  # seconds a match may sit off the fitted line
    max_gap: NonNegative = 4.0  # seconds without a match that still join two pieces
    min_len: NonNegative = 3.0  # shorter segments are dropped
    min_density: Share = 0.5  # share of the segment's query seconds that must be matched
    min_score: Share = 0.65  # segments scoring below are not reported (chosen by the sweep)
    motion_lag: Count = 3  # samples over which motion is compared (3 s at 1 fps separated copies best)
    # motion agreement (see match/motion.py) at which a visual piece scores 0 ... and from
    # which it keeps its full score; motion_full <= motion_lo turns the motion check off
    motion_lo: Number = 0.30
    motion_full: Number = 0.55
    full_len: NonNegative = 8.0  # a segment shorter than this scores in proportion (short = weak evidence); 0 = off
    # distinctiveness (align.distinctiveness): how much better a piece's query frames match this source
    # than any other candidate; from distinct_lo it starts to stand in for motion agreement and
    # length, from distinct_full it replaces them (a short or motion-scrambled copy that nothing else
    # in the library resembles); distinct_full <= distinct_lo turns it off
    distinct_lo: Number = 0.15
    distinct_full: Number = 0.45
    distinct_min_others: Count = 2  # other candidates needed to measure it (fewer: no background, off)
    # beyond distinct_full it also lifts the piece's score towards 1, by up to distinct_lift at
    # distinct_sure: a short copy under stacked edits matches its source at only 0.65-0.85, yet far
    # better than anything else (hard benchmark, four seeds: 7 of 13 copies of 3-5 s found, was 1;
    # 0.55 let a 4 s dev40 distractor through, 0.60 none). distinct_lift 0 turns it off.
    distinct_sure: Number = 0.60
    distinct_lift: Share = 0.7
    # motion factor kept by a piece past distinct_sure when no line through its span moves with the
    # source (align._realigned); 0 = off. Hard benchmark, five seeds: LCT 0.666 -> 0.693
    unplaced_motion: Share = 0.5
    # a visual piece under min_score beside a copy of the same source scored this much or more is
    # reported at its full evidence when its frames match this source best (align.siblings_lifted);
    # above 1 = off. Hard benchmark seeds 5-8: two 4 s copies of photo pans found, nothing false
    sibling_from: NonNegative = 0.9
    audio_pad: NonNegative = 2.5  # audio windows are long: the sound a run of matched centres holds (length, min_len)
    # how far past its outermost matched window centres a copy's reported bounds reach (at most
    # audio_pad; an end at its video's first or last window keeps audio_pad): a 5 s window matches
    # with ~3.5 s of it copied (align._edges). Hard seeds 5-8: LCT 0.810 -> 0.821; dev40 0.994 either way
    audio_edge: NonNegative = 1.5
    # an audio piece whose Chromaprint codes along its line differ in fewer than audio_confirm_none
    # of their bits is the same recording: it scores at least min_score, rising to 0.9 at
    # audio_confirm_full (match/audio_confirm.py); none <= full turns it off
    audio_confirm_none: Share = 0.27
    audio_confirm_full: Share = 0.12
    max_segments: Count = 4  # per (query, source) pair
    # PDQ as a second reading of each frame (match/frame_hashes.py): hashes at most pdq_full bits apart
    # count as a sure match, fading to no evidence at pdq_none; pdq_none <= pdq_full turns it off.
    # Hard seeds 5-8: LCT 0.908 -> 0.919, copies of 3-5 s found 11 -> 12 of 13; one pair in 2.3 million
    # trusted frames of different videos came within 80 bits (at 100 they crowd a 4 s copy out again)
    pdq_full: NonNegative = 50
    pdq_none: NonNegative = 90

    @model_validator(mode="after")
    def _ordered(self) -> "SegmentConfig":
        _lo_below_hi(self, ("visual_lo", "visual_hi"), ("audio_lo", "audio_hi"))
        if self.audio_edge > self.audio_pad:
            raise rule(f"must be at most audio_pad ({self.audio_pad:g})", "audio_edge", self.audio_edge)
        if self.distinct_lift > 0:
            _lo_below_hi(self, ("distinct_full", "distinct_sure"))
        return self


@section
class AudioCopyConfig:
    """When a pair whose pictures differ is flagged "audio copy" (soundtrack reuse, match/scoring.py
    ``audio_copy``). The flag is a report only: fusion weights and labels are untouched."""

    # calibrated audio score from which the soundtrack is the same (a faithful copy 1.0, unrelated music
    # ~0); visual score below which the pictures are not a copy (fusion reaches "similar" from 0.54);
    # share of the shorter video the aligned audio must span ("a whole copy", not a shared jingle)
    min_audio: Share = 0.8
    max_visual: Share = 0.5
    min_cover: Share = 0.8


def _off_or_two(n: int) -> int:
    if n == 1:
        raise rule("must be 0 (off) or >= 2: one video matching a stretch is a copy, not common content")
    return n


@section
class CommonConfig:
    """Common segments (match/common.py): a query stretch whose frames or audio windows match many
    distinct library videos (a channel intro, a sponsor clip, a test card) is reported once and
    left out of every pair's evidence, so it alone makes no two videos copies.
    """

    # distinct library videos a query row must match (at the alignment's per-cell similarity) to be
    # common; 0 = off. A copied stretch has one source, or the few copies of it a library holds;
    # videos that match most of the query (max_cover) are its copies and are not counted anyway.
    min_videos: Annotated[CountOrZero, AfterValidator(_off_or_two)] = 8
    # neighbours asked per query row for that count (votes use search.top_k): an intro holds several
    # similar frames, so the 10 nearest may come from 3-5 videos; >= min_videos and >= search.top_k
    search_k: Count = 64
    # share of the query's rows from which a matching video is a copy of the query (not counted)
    max_cover: Annotated[float, Strict(), Field(gt=0, le=1)] = 0.5
    # seconds between common rows that still make one segment (the index keeps every n-th frame)
    max_gap: NonNegative = 2.0
    # an audio window's match counts only if that video also matches a window this many seconds away
    # at the same offset (chance look-alikes grow with the library; match/common.py); 0 = all
    audio_support: NonNegative = 2.5


@section
class SearchConfig:
    top_k: Count = 10  # neighbours per query frame / window
    max_candidates: Count = 20  # candidate videos scored in full per query
    top: Count = 10  # matches returned
    consistency: Literal[CONSISTENCY_LEVELS] = "Session"  # of Milvus server searches
    pitch_gate: Share = 0.9  # a query window with a neighbour this alike (KNN space) skips its pitch variants
    # the audio.query_pitch shifts whose windows also ask the KNN for candidates (each is as many KNN
    # rows as half the query's windows: docs/scaling.md); the alignment takes every shift's reading
    pitch_knn: PitchShifts = (-2.0, -1.0, 1.0, 2.0)
    # What a client's {"uri": "s3://..."} may name (the service reads it with its own credentials):
    # s3://bucket[/prefix] entries, matched on whole path segments (astradup/uris.py). Empty = the
    # buckets the index's status records came from; a local-only index then allows no URI at all.
    allowed_uris: list[str] = field(default_factory=list)

    @field_validator("allowed_uris")
    @classmethod
    def _s3_prefixes(cls, entries: list[str]) -> list[str]:
        """A typo here must not silently widen (or empty) what clients may read."""
        for entry in entries:
            try:
                split_s3(entry, prefix=True)
            except BadUri as e:
                raise rule(f"entry {entry!r}: {e}") from None
        return entries


@section
class CatalogConfig:
    """How a process keeps its index of the shards current (store/shards.py, "Finding new shards")."""

    refresh_s: NonNegative = 2.0  # look for new shards at most this often per process (0 = on every call)
    full_list_s: NonNegative = 300.0  # list every shard this often: removed/resized shards, very late names
    lookback_s: NonNegative = 60.0  # each refresh re-lists names up to this much older than the newest seen
    feature_cache_mb: NonNegative = 256.0  # decoded features kept in memory per process (LRU by bytes; 0 = off)
    read_concurrency: Annotated[int, Strict(), Field(ge=1, le=64)] = 8  # shards one search reads at once

    @model_validator(mode="after")
    def _full_list_after_refresh(self) -> "CatalogConfig":
        # a full listing more often than the incremental refresh means nothing
        if self.full_list_s and self.full_list_s < self.refresh_s:
            raise rule(f"must be 0 (every refresh lists all) or >= refresh_s ({self.refresh_s:g})",
                       "full_list_s", self.full_list_s)
        return self


@section
class PipelineConfig:
    decode_concurrency: CountOrZero = 2  # 0 = one per free CPU of the cluster (jobs/backfill's default)
    embed_concurrency: Count = 1
    embed_num_gpus: NonNegative = 0.0  # GPUs per embedder actor; 0 = one each when the cluster has GPUs, else CPU
    write_batch: Count = 100  # videos per Parquet shard / Milvus write
    dashboard: Bool = True  # start the Ray dashboard with a local Ray (tests turn it off)
    metrics_export_port: Port = 0  # Prometheus endpoint of a local Ray's metrics agent; 0 = Ray's choice
    # Where a local Ray listens: 127.0.0.1 = this machine only; 0.0.0.0 = every interface (token auth stays on)
    ray_host: NonEmpty = "127.0.0.1"
    # Who writes shards and vectors: driver (one writer, what Milvus Lite needs) | workers (writer
    # actors, each its own Milvus client and shard store: a server) | auto (workers on a server, else
    # driver). Either way vectors go first, then the shard with the "ok" rows.
    writers: Literal[WRITERS] = "auto"
    write_concurrency: Count = 2  # writer actors when writers are workers


def _phash_word(value: Any) -> Any:
    """YAML reads a bare ``phash: off`` as the boolean false: it means the word."""
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


@section
class VectorsConfig:
    """What the Milvus copy keeps (store/projection.py): it only picks candidates, the shards score."""

    projection: Text = "builtin"  # builtin | none | path/to/projection.npz (scripts/fit_projection.py)
    frame_stride: Count = 2  # index every n-th frame (queries search with every frame)
    audio_stride: Count = 2  # index every n-th audio window
    merge_rows: Share = 0.95  # consecutive query rows this alike (KNN space) share one search; 1 = never
    # auto (= off: no pHash collection; scoring reads the codes from the shards) | on | off
    phash: Annotated[Literal[PHASH_MODES], BeforeValidator(_phash_word)] = "auto"
    # Frame/audio vector index when a collection is made: AUTOINDEX = the engine's choice (HNSW on Lite);
    # Lite also has IVF_FLAT, IVF_SQ8, HNSW_SQ, BRUTE_FORCE; free text (a server has more, Milvus names a bad one).
    index_type: NonEmpty = "AUTOINDEX"


@section
class DedupConfig:
    """The dedup job's KNN self-join (dedup/local_knn.py): local = a faiss index of the library's
    Milvus vectors, built on disk once per run (new videos added) and read by every join actor;
    milvus = one server search per batch and modality (what the service's searches use)."""

    knn: Literal["local", "milvus"] = "local"
    nprobe: Count = 16  # inverted lists each row searches in a local IVF index (more: nearer exact, slower)


@section
class RetryConfig:
    """How calls to Milvus (and other services) survive an outage: capped exponential backoff."""

    attempts: Count = 8  # tries per call before the error reaches the caller
    backoff: NonNegative = 0.5  # seconds before the second try; doubled each time
    max_backoff: NonNegative = 30.0  # cap of one wait


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


@section
class LogConfig:
    level: Annotated[Literal[LEVELS], BeforeValidator(_upper)] = "INFO"  # any case: info = INFO
    json: Bool = True  # one JSON object per line (video_id, stage, duration_s...); false = plain text


@section
class NotifyConfig:
    # POSTed a JSON summary when a backfill ends; "" = off. Free text: astradup/notify.py refuses
    # (and reports) a URL it cannot post to without failing the backfill.
    webhook_url: Text = ""
    timeout: Positive = 10.0  # seconds per webhook attempt


@section
class Config:
    data_dir: NonEmpty = "astradup_data"
    milvus_uri: Text = ""  # "" = Milvus Lite file <data_dir>/milvus.db; or http://host:19530
    milvus_token: Text = ""
    collection_prefix: NonEmpty = "astradup"
    shards_dir: Text = ""  # "" = <data_dir>/shards; may be s3://bucket/prefix
    s3_endpoint: Text = ""  # e.g. http://127.0.0.1:5000 for a local S3; "" = AWS default
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    segments: SegmentConfig = field(default_factory=SegmentConfig)
    audio_copy: AudioCopyConfig = field(default_factory=AudioCopyConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    common: CommonConfig = field(default_factory=CommonConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    vectors: VectorsConfig = field(default_factory=VectorsConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    log: LogConfig = field(default_factory=LogConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)

    @property
    def resolved_milvus_uri(self) -> str:
        return self.milvus_uri or str(Path(self.data_dir) / "milvus.db")

    @property
    def resolved_shards_dir(self) -> str:
        return self.shards_dir or str(Path(self.data_dir) / "shards")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @model_validator(mode="after")
    def _across_sections(self) -> "Config":
        """Rules that join two sections (each section checked its own fields already)."""
        c, top_k = self.common, self.search.top_k
        if c.search_k < max(c.min_videos, top_k):
            raise rule(f"must be >= common.min_videos ({c.min_videos}) and >= search.top_k ({top_k}): a row's "
                       "KNN answer must be able to hold that many videos", "common.search_k", c.search_k)
        stray = [s for s in self.search.pitch_knn if s not in self.audio.query_pitch]
        if stray and self.audio.query_pitch:  # query_pitch [] turns the readings off, KNN's too
            raise rule(f"{', '.join(f'{s:g}' for s in stray)} not in audio.query_pitch: the KNN can only ask "
                       "for readings the query makes", "search.pitch_knn", list(self.search.pitch_knn))
        if self.pipeline.writers == "workers" and is_lite_uri(self.resolved_milvus_uri):
            # one process per Lite file: a second writer would fail or corrupt it
            raise rule(f"needs a Milvus server URI (milvus_uri: http://host:19530); Milvus Lite "
                       f"({self.resolved_milvus_uri}) allows one writing process: use auto or driver",
                       "pipeline.writers", "workers")
        return self


SECTION_NAMES.update({f.type: f.name for f in dataclasses.fields(Config) if isinstance(f.type, type)})


