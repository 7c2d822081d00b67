"""What each route of the API answers, as pydantic models: /openapi.json describes every response
(and FastAPI checks each answer against its model before it leaves, so the description cannot drift
from what the service sends).

The search deployment still returns plain dicts (they cross a deployment handle); the gateway's
routes declare these models as their ``response_model``. Fields are those of the records' own
``to_dict`` (astradup/records.py, match/common.py, reviews.py) plus what the service adds.
No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.
"""
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Seconds = float


class _Out(BaseModel):
    # Answers are documented, not refused for an extra key: a field added by the core records is
    # passed on (and shows up in the schema once added here).
    model_config = ConfigDict(extra="allow")


class ErrorOut(_Out):
    error: str = Field(description="what was wrong, for a person; the status code says which kind")


class HealthOut(_Out):
    status: Literal["ok"]
    videos: int = Field(description="indexed videos (status ok)")
    shards_quarantined: int = Field(description="damaged shards skipped (features lost until re-indexed)")
    searches_ok: int
    searches_rejected: int = Field(description="searches answered 4xx")
    searches_failed: int = Field(description="searches answered 5xx")
    errors_4xx: int
    errors_5xx: int


class IndexProgressOut(_Out):
    rows: int = Field(description="rows the collection holds")
    indexed: int = Field(description="rows Milvus reports indexed")
    pending: int = Field(description="rows waiting for an index build (searched by brute force meanwhile)")
    ready: int = Field(description="rows searched through a built index: min(indexed, rows - pending)")


class StatsOut(_Out):
    shards: dict[str, int] = Field(description="videos by status, shard files and bytes, damaged shards")
    vectors: dict[str, int] = Field(description="rows per vector collection")
    index: dict[str, IndexProgressOut] = Field(description="per vector index, its build state")
    quarantined: dict[str, str] = Field(description="each damaged shard skipped, and why")
    milvus_uri: str
    shards_dir: str


class SegmentOut(_Out):
    """A matched interval: query seconds [q_start, q_end] are source seconds [s_start, s_end]."""
    query_id: str | None = None
    source_id: str | None = None
    q_start: Seconds
    q_end: Seconds
    s_start: Seconds
    s_end: Seconds
    score: float
    modalities: list[str] = []


class MatchOut(_Out):
    source_id: str
    source_uri: str
    name: str = Field(description="file name of the source")
    duration: float | None = None
    scores: dict[str, float] = Field(description="modality (visual, audio, metadata) -> score in [0, 1]; "
                                                 "a hash file search: vpdq_query, vpdq_source (vPDQ's match shares)")
    fused: float
    confidence: float
    label: str = Field(description="duplicate | near-duplicate | similar | none")
    review: bool = Field(description="low confidence: worth a person's verdict")
    notes: list[str]
    segments: list[SegmentOut]
    audio_copy: SegmentOut | None = Field(description="the soundtrack copied whole under another picture")
    decision: Literal["confirmed", "rejected"] | None = None


class QueryOut(_Out):
    video_id: str
    kind: Literal["upload", "fingerprint", "uri", "video", "hashes"] = Field(
        description="upload: a video; fingerprint: a fingerprint file; hashes: a vPDQ hash file")
    name: str
    duration: float | None = None
    has_audio: bool
    frames: int
    searched_seconds: float | None = Field(None, description="set when only the query's start was searched")


class CommonOut(_Out):
    """A stretch of the query many indexed videos share (an intro, a logo): listed once, in no match."""
    q_start: Seconds
    q_end: Seconds
    videos: int
    modalities: list[str]


class SearchOut(_Out):
    query: QueryOut
    matches: list[MatchOut]
    common: list[CommonOut]
    took_ms: float


class VideoRow(_Out):
    video_id: str
    name: str
    uri: str | None = None
    status: str = Field(description="ok | failed | deleted")
    error: str
    duration: float | None = None
    size: int | None = None
    at: str | None = Field(None, description="ISO time of the status record")


class VideoList(_Out):
    total: int = Field(description="videos matching the status and name filter, over all pages")
    offset: int = Field(0, description="rows skipped before this page")
    next_offset: int | None = Field(None, description="offset of the next page; null on the last")
    videos: list[VideoRow]


class VideoDetail(VideoRow):
    """Present only when the video is indexed: ``meta``, ``frames``, ``has_audio``."""
    meta: dict[str, Any] | None = None
    frames: int | None = None
    has_audio: bool | None = None


class DeleteOut(_Out):
    deleted: str
    vectors_removed: int


class ReviewOut(_Out):
    query_id: str
    source_id: str
    decision: Literal["confirmed", "rejected"]
    note: str
    at: float = Field(description="unix seconds of the latest verdict")


class ReviewList(_Out):
    reviews: list[ReviewOut]


class QueueItem(MatchOut):
    query_id: str
    query_name: str
    query_duration: float | None = None


class QueueOut(_Out):
    items: list[QueueItem]
    total: int
    took_ms: float
    joined: bool = Field(description="whether the dedup job has run (the queue is read from its pairs)")


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: each refusal it can answer, with the JSON error body."""
    words = {400: "bad request", 401: "missing or wrong API key", 403: "not allowed", 404: "not found",
             409: "conflict", 413: "too large", 415: "not a video", 416: "range not satisfiable",
             422: "invalid input", 502: "upstream (S3) failure", 503: "busy or not ready: retry"}
    return {c: {"model": ErrorOut, "description": words[c]} for c in sorted({400, 422, *codes})}
