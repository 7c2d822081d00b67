"""One typed config object: YAML defaults in astradup/configs/, then a user YAML, then ASTRADUP_* env vars.

Env overrides use ``__`` between section and key, e.g. ``ASTRADUP_FUSION__VISUAL=0.7`` or
``ASTRADUP_MILVUS_URI=http://127.0.0.1:19530``; values are parsed as YAML scalars.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from astradup.errors import ConfigError

# Package data (pyproject.toml), so an installed wheel finds it with no source tree around; the
# top-level configs/ of the repository is a link to this folder.
DEFAULT_YAML = Path(__file__).resolve().parent / "configs" / "default.yaml"


@dataclass
class DecodeConfig:
    fps: float = 1.0  # frames sampled per second of video
    frame_size: int = 224  # frames are resized once to frame_size x frame_size
    sample_rate: int = 11025  # mono PCM rate for Chromaprint and MFCC
    max_seconds: float = 0.0  # 0 = whole file; otherwise only the first max_seconds
    # Frame decoder: decord (the default; every frame decoded) | pyav_fast (PyAV on one thread,
    # skipping non-reference frames and H.264's deblocking filter: about a third less frame-decoding
    # CPU; a sample may get the last decoded frame before it, a few frames early, with slightly
    # blockier pixels; decord, then ffmpeg, take over on any failure). Index and queries must use
    # the same value: changing it means re-indexing.
    decoder: str = "decord"
    # Limits checked on the probe before any frame is decoded (0 = none): they bound the memory a
    # picture costs (a 16000x16000 frame is 384 MB of YUV before any copy) and the work per second
    # of media. 8K (8192x4320) and 240 fps cover real cameras; a file over either is refused.
    max_pixels: int = 8192 * 4320
    max_fps: float = 240.0
    # Wall-time budget of one file's decode (frames and audio), 0 = none. Indexing leaves it off
    # (a three-hour file legitimately takes minutes); the HTTP service sets its own for queries.
    max_decode_seconds: float = 0.0


DECODERS = ("decord", "pyav_fast")


def check_decode(cfg: DecodeConfig) -> None:
    """ConfigError naming the setting when a decode setting has no meaning."""
    if cfg.decoder not in DECODERS:
        raise ConfigError(f"decode.decoder must be one of {', '.join(DECODERS)}, got {cfg.decoder!r}")
    for name in ("max_pixels", "max_fps", "max_decode_seconds"):
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"decode.{name} must be a number >= 0 (0 = no limit), got {value!r}")


@dataclass
class EmbedderConfig:
    kind: str = "sscd_onnx"  # sscd_onnx | open_clip | hf_clip
    model: str = "sscd_distilled"  # sscd_onnx: sscd_distilled | sscd ; open_clip: model name
    pretrained: str = ""  # open_clip: pretrained tag or local checkpoint path
    batch_size: int = 32
    device: str = "auto"  # auto | cpu | cuda
    # SSCD input: shorter side in pixels. 224 = the decoded frames as they are (no upscale):
    # 1.85x less CPU per frame than SSCD's recommended 288, with dev-benchmark scores within 0.01
    # (docs/performance.md). Index and queries must use the same value: changing it means re-indexing.
    short_side: int = 224
    query_flip: bool = False  # also embed mirrored query frames (for CLIP; SSCD is mirror-invariant)
    # Frame descriptor = the model's output projected on its top singular vectors (fitted by
    # scripts/fit_projection.py, shipped for sscd_onnx/sscd_distilled). 256 halves the shards'
    # frame bytes (index 3.7 -> 2.8 MB/h) but moved the dev40 scores by more than 0.01 (LCT
    # 0.978 -> 0.967, an audio-only copy lost: docs/performance.md), so the default keeps the
    # full output (0). Used only when the basis is for the configured model. Index and queries
    # must agree: changing it means indexing the videos again.
    pca_dims: int = 0
    pca_file: str = "builtin"  # builtin (astradup/data/projection.npz) or a path to such a file


@dataclass
class AudioConfig:
    window: float = 5.0  # seconds per audio window
    step: float = 1.0  # window step for indexed videos
    query_step: float = 0.5  # window step for queries (0.5 beat 1.0 on the dev benchmark sweep)
    n_mfcc: int = 13


@dataclass
class FusionConfig:
    visual: float = 0.65
    audio: float = 0.25
    metadata: float = 0.10
    duplicate: float = 0.95
    near_duplicate: float = 0.85
    similar: float = 0.70
    review_confidence: float = 0.6  # below this confidence a match goes to the review queue


@dataclass
class ScoreConfig:
    """Calibration of raw similarities to [0, 1] modality scores: (x - lo) / (hi - lo), clipped.

    lo is what unrelated content typically reaches, hi what a faithful copy reaches; both were chosen
    by measurement on the dev benchmark (see README).
    """

    emb_lo: float = 0.35  # mean best-match inner product of frame embeddings
    emb_hi: float = 0.75
    phash_lo: float = 0.70  # 1 - hamming/256 of best-matching frames
    phash_hi: float = 0.92
    chroma_lo: float = 0.65  # fraction of equal Chromaprint bits at the best offset
    chroma_hi: float = 0.85
    audio_vec_lo: float = 0.55  # mean best-match inner product of audio window vectors
    audio_vec_hi: float = 0.90


@dataclass
class SegmentConfig:
    """Temporal alignment of frame/window matches into copied segments (see match/align.py)."""

    visual_lo: float = 0.30  # per-frame embedding inner product -> evidence in [0, 1]
    visual_hi: float = 0.80
    audio_lo: float = 0.55  # per-window audio vector inner product -> evidence in [0, 1]
    audio_hi: float = 0.85
    cell_threshold: float = 0.5  # evidence from which a (query t, source t) cell counts as a match
    slopes: tuple = (0.8, 0.87, 0.91, 0.95, 1.0, 1.05, 1.1, 1.15, 1.25)  # source s per query s (speed changes)
    offset_tol: float = 1.5  # seconds a match may sit off the fitted line
    max_gap: float = 4.0  # seconds without a match that still join two pieces
    min_len: float = 3.0  # shorter segments are dropped
    min_density: float = 0.5  # share of the segment's query seconds that must be matched
    min_score: float = 0.65  # segments scoring below are not reported (chosen by the sweep)
    motion_lag: int = 3  # samples over which motion is compared (3 s at 1 fps separated copies best)
    motion_lo: float = 0.30  # motion agreement (see align.motion_agreement) at which a visual piece scores 0
    motion_full: float = 0.55  # ... and from which it keeps its full score
    full_len: float = 8.0  # a segment shorter than this scores in proportion (short = weak evidence)
    audio_pad: float = 2.5  # audio windows are long: their matched centres sit inside the copy by half a window
    max_segments: int = 4  # per (query, source) pair


@dataclass
class AudioCopyConfig:
    """When a pair whose pictures differ is flagged "audio copy" (soundtrack reuse, match/scoring.py
    ``audio_copy``). The flag is a report only: fusion weights and labels are untouched.
    """

    # calibrated audio score (ScoreConfig) from which the soundtrack counts as the same: a faithful
    # copy calibrates to 1.0, unrelated music stays near 0; 0.8 leaves room for a re-encode's loss
    min_audio: float = 0.8
    # calibrated visual score below which the pictures are not a copy: with audio and metadata at 1
    # the fused score reaches the "similar" label (0.70) only from visual 0.54, so below 0.5 the
    # label cannot say what the soundtrack shows
    max_visual: float = 0.5
    # share of the shorter video's duration the aligned audio interval must span: "a whole copy",
    # not a shared jingle (shorter stretches are partial copies, reported as segments)
    min_cover: float = 0.8


@dataclass
class CommonConfig:
    """Common segments (match/common.py): a query stretch whose frames or audio windows match many
    distinct library videos (a channel intro, a sponsor clip, a test card) is reported once and
    left out of every pair's evidence, so it alone makes no two videos copies.
    """

    # distinct library videos a query row must match (at the alignment's per-cell similarity) to be
    # common; 0 = off. A copied stretch has one source, or the few copies of it a library holds;
    # videos that match most of the query (max_cover) are its copies and are not counted anyway.
    min_videos: int = 8
    # neighbours asked per query row for that count (votes still use search.top_k): a video's
    # intro holds several similar frames, so the top_k=10 nearest rows may come from only 3-5
    # videos; must be >= min_videos and >= search.top_k
    search_k: int = 64
    # share of the query's rows from which a matching video is a copy of the query (not counted)
    max_cover: float = 0.5
    # seconds between common rows that still make one segment (the index keeps every n-th frame)
    max_gap: float = 2.0


@dataclass
class SearchConfig:
    top_k: int = 10  # neighbours per query frame / window
    max_candidates: int = 20  # candidate videos scored in full per query
    top: int = 10  # matches returned
    consistency: str = "Session"  # Milvus server searches: Strong | Session | Bounded | Eventually
    # What a client's {"uri": "s3://..."} may name (the service reads it with its own credentials):
    # s3://bucket[/prefix] entries, matched on whole path segments (astradup/uris.py). Empty = the
    # buckets the index's status records came from; a local-only index then allows no URI at all.
    allowed_uris: list = field(default_factory=list)


@dataclass
class CatalogConfig:
    """How a process keeps its index of the shards current (store/shards.py, "Finding new shards")."""

    refresh_s: float = 2.0  # look for new shards at most this often per process (0 = on every call)
    full_list_s: float = 300.0  # list every shard this often: removed/resized shards, very late names
    lookback_s: float = 60.0  # each refresh re-lists names up to this much older than the newest seen
    feature_cache_mb: float = 256.0  # decoded features kept in memory per process (LRU by bytes; 0 = off)


@dataclass
class PipelineConfig:
    decode_concurrency: int = 2
    embed_concurrency: int = 1
    embed_num_gpus: float = 0.0  # GPUs per embedder actor; 0 = one each when the cluster has GPUs, else CPU
    write_batch: int = 100  # videos per Parquet shard / Milvus write
    dashboard: bool = True  # start the Ray dashboard with a local Ray (tests turn it off)
    metrics_export_port: int = 0  # Prometheus endpoint of a local Ray's metrics agent; 0 = Ray's choice
    # Where a local Ray listens (GCS, raylet, agents, metrics, dashboard): 127.0.0.1 = this machine
    # only; 0.0.0.0 = every interface (other hosts can reach it; token auth stays on either way).
    ray_host: str = "127.0.0.1"
    # Who writes the Parquet shards and the Milvus vectors: driver (the job's driver, one writer:
    # what a Milvus Lite file needs) | workers (a pool of writer actors, the graph's last stage, each
    # with its own Milvus client and shard store: needs a Milvus server) | auto (workers on a
    # server, driver on Lite). Either way vectors go first, then the shard with the "ok" rows.
    writers: str = "auto"
    write_concurrency: int = 2  # writer actors when writers are workers


WRITERS = ("auto", "driver", "workers")


@dataclass
class VectorsConfig:
    """What the Milvus copy keeps (store/projection.py): it only picks candidates, the shards score."""

    projection: str = "builtin"  # builtin | none | path/to/projection.npz (scripts/fit_projection.py)
    frame_stride: int = 2  # index every n-th frame (queries search with every frame)
    audio_stride: int = 2  # index every n-th audio window
    phash: str = "auto"  # auto (a pHash collection on a server, none on Lite) | on | off
    # Vector index of the frame and audio collections: AUTOINDEX = the engine's choice (HNSW on
    # Lite); Lite also has IVF_FLAT, IVF_SQ8, HNSW_SQ, BRUTE_FORCE. Applies when a collection is made.
    index_type: str = "AUTOINDEX"


@dataclass
class RetryConfig:
    """How calls to Milvus (and other services) survive an outage: capped exponential backoff."""

    attempts: int = 8  # tries per call before the error reaches the caller
    backoff: float = 0.5  # seconds before the second try; doubled each time
    max_backoff: float = 30.0  # cap of one wait


@dataclass
class LogConfig:
    level: str = "INFO"  # DEBUG | INFO | WARNING | ERROR
    json: bool = True  # one JSON object per line (video_id, stage, duration_s...); false = plain text


@dataclass
class NotifyConfig:
    webhook_url: str = ""  # POSTed a JSON summary when a backfill ends; "" = off
    timeout: float = 10.0  # seconds per webhook attempt


@dataclass
class Config:
    data_dir: str = "astradup_data"
    milvus_uri: str = ""  # "" = Milvus Lite file <data_dir>/milvus.db; or http://host:19530
    milvus_token: str = ""
    collection_prefix: str = "astradup"
    shards_dir: str = ""  # "" = <data_dir>/shards; may be s3://bucket/prefix
    s3_endpoint: str = ""  # e.g. http://127.0.0.1:5000 for a local S3; "" = AWS default
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


def _merge(obj: Any, values: dict[str, Any], where: str) -> None:
    known = {f.name: f for f in dataclasses.fields(obj)}
    for key, val in values.items():
        if key not in known:
            raise ConfigError(f"unknown config key '{where}{key}'")
        cur = getattr(obj, key)
        if isinstance(cur, (list, tuple)) and not isinstance(val, (list, tuple)):
            # list("s3://b") would be a list of characters: a scalar where a list belongs is an error
            raise ConfigError(f"config key '{where}{key}' must be a list, got {val!r}")
        if dataclasses.is_dataclass(cur):
            if not isinstance(val, dict):
                raise ConfigError(f"config key '{where}{key}' must be a mapping")
            _merge(cur, val, f"{where}{key}.")
        else:
            setattr(obj, key, type(cur)(val) if cur is not None and val is not None else val)


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """ASTRADUP_* variables that name config keys. Others (ASTRADUP_API_KEY for the service, say)
    belong to other parts of the project and are left to them: the environment is shared."""
    out: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(Config)}
    for name, raw in environ.items():
        if not name.startswith("ASTRADUP_") or name == "ASTRADUP_CONFIG":
            continue
        parts = name[len("ASTRADUP_"):].lower().split("__")
        if parts[0] not in known:
            continue
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""
    return out


def load_config(path: str | os.PathLike[str] | None = None,
                overrides: dict[str, Any] | None = None,
                environ: dict[str, str] | None = None) -> Config:
    """Defaults < configs/default.yaml < ``path`` (or $ASTRADUP_CONFIG) < env < ``overrides``."""
    env = dict(os.environ if environ is None else environ)
    cfg = Config()
    layers: list[dict[str, Any]] = []
    if DEFAULT_YAML.exists():
        layers.append(yaml.safe_load(DEFAULT_YAML.read_text()) or {})
    path = path or env.get("ASTRADUP_CONFIG")
    if path:
        layers.append(yaml.safe_load(Path(path).read_text()) or {})
    layers.append(_env_overrides(env))
    if overrides:
        layers.append(overrides)
    for layer in layers:
        _merge(cfg, layer, "")
    check_decode(cfg.decode)
    check_search(cfg.search)
    check_common(cfg.common, cfg.search)
    check_audio_copy(cfg.audio_copy)
    check_catalog(cfg.catalog)
    check_pipeline(cfg)
    return cfg


def check_pipeline(cfg: Config) -> None:
    """ConfigError naming the setting when ``pipeline.writers`` is unknown, or asks for several
    writers on a Milvus Lite file (one process per file: a second writer would fail or corrupt it)."""
    from astradup.uris import is_lite_uri

    p = cfg.pipeline
    if p.writers not in WRITERS:
        raise ConfigError(f"pipeline.writers must be one of {', '.join(WRITERS)}, got {p.writers!r}")
    if p.writers == "workers" and is_lite_uri(cfg.resolved_milvus_uri):
        raise ConfigError("pipeline.writers: workers needs a Milvus server URI (milvus_uri: http://host:19530); "
                          f"Milvus Lite ({cfg.resolved_milvus_uri}) allows one writing process: use auto or driver")
    if isinstance(p.write_concurrency, bool) or not isinstance(p.write_concurrency, int) or p.write_concurrency < 1:
        raise ConfigError(f"pipeline.write_concurrency must be an integer >= 1, got {p.write_concurrency!r}")


def resolved_writers(cfg: Config) -> str:
    """"driver" or "workers": what ``pipeline.writers`` means for the configured Milvus URI."""
    from astradup.uris import is_lite_uri

    if cfg.pipeline.writers == "auto":
        return "driver" if is_lite_uri(cfg.resolved_milvus_uri) else "workers"
    return cfg.pipeline.writers


def check_audio_copy(cfg: AudioCopyConfig) -> None:
    """ConfigError naming the setting when an audio-copy threshold is not a number in [0, 1]: the
    scores and the coverage it is compared with all are, so anything else flags all or nothing."""
    for name in ("min_audio", "max_visual", "min_cover"):
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"audio_copy.{name} must be a number in [0, 1], got {value!r}")


def check_catalog(cfg: CatalogConfig) -> None:
    """ConfigError naming the setting when a catalog setting is negative, not a number or
    inconsistent (a full listing more often than the incremental refresh means nothing)."""
    for name in ("refresh_s", "full_list_s", "lookback_s", "feature_cache_mb"):
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"catalog.{name} must be a number >= 0, got {value!r}")
    if cfg.full_list_s and cfg.full_list_s < cfg.refresh_s:
        raise ConfigError(f"catalog.full_list_s ({cfg.full_list_s}) must be 0 (every refresh lists all) "
                          f"or >= catalog.refresh_s ({cfg.refresh_s})")


def check_common(cfg: CommonConfig, search: SearchConfig) -> None:
    """ConfigError naming the setting when the common-segment rule cannot work as configured: a
    count no KNN answer can reach would silently turn it off, a negative one has no meaning."""
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not is_int(cfg.min_videos) or cfg.min_videos < 0 or cfg.min_videos == 1:
        raise ConfigError(f"common.min_videos must be 0 (off) or an integer >= 2, got {cfg.min_videos!r}")
    if not is_int(cfg.search_k) or cfg.search_k < max(cfg.min_videos, search.top_k, 1):
        raise ConfigError(f"common.search_k must be an integer >= common.min_videos ({cfg.min_videos}) and "
                          f">= search.top_k ({search.top_k}): a row's KNN answer must be able to hold that "
                          f"many videos, got {cfg.search_k!r}")
    if not isinstance(cfg.max_cover, (int, float)) or isinstance(cfg.max_cover, bool) \
            or not 0.0 < cfg.max_cover <= 1.0:
        raise ConfigError(f"common.max_cover must be a number in (0, 1], got {cfg.max_cover!r}")
    if not isinstance(cfg.max_gap, (int, float)) or isinstance(cfg.max_gap, bool) \
            or not math.isfinite(cfg.max_gap) or cfg.max_gap < 0:
        raise ConfigError(f"common.max_gap must be a number >= 0, got {cfg.max_gap!r}")


def check_search(cfg: SearchConfig) -> None:
    """ConfigError naming the entry when ``search.allowed_uris`` holds anything but s3://bucket[/prefix]:
    a typo there must not silently widen (or empty) what clients may read."""
    from astradup.uris import BadUri, split_s3

    for entry in cfg.allowed_uris:
        try:
            split_s3(entry, prefix=True)
        except BadUri as e:
            raise ConfigError(f"search.allowed_uris entry {entry!r}: {e}") from None
