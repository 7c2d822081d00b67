"""The HTTP face of AstraDup: a FastAPI app as the Serve ingress deployment.

Everything a client sends is checked before it reaches search (serve/guard.py on every request,
serve/search_form.py for /search, the routes' parameters here): ids must be 32 lowercase hex
characters, uploads are size-limited while they stream in and must start like a video container,
only ``s3://`` URIs are accepted (no client-given path is ever read from disk), and media and
thumbnails are served only for indexed ids, from the uri their status record holds. A bad request
gets a 4xx with ``{"error": "..."}``; a 5xx means a server fault.

No ``from __future__ import annotations`` here: FastAPI resolves parameter annotations at runtime,
and Serve's ingress re-wraps the methods, so string annotations would not resolve.
"""
import asyncio
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, Path as PathParam, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from astradup.catalog import Catalog
from astradup.config import Config
from astradup.records import STATUS_OK
from astradup.uris import is_lite_uri
from serve import state
from serve.api_errors import ApiError, install_error_handlers, replica_answer
from serve.guard import install_guard
from serve.hosts import HostPolicy
from serve.media import Indexed, MediaGone, ThumbCache, content_type, open_verified, stream_range
from serve.metrics import Metrics
from serve.ranges import RangeNotSatisfiable, parse_range
from serve.responses import (DeleteOut, HealthOut, QueueOut, ReviewList, ReviewOut, SearchOut, StatsOut, VideoDetail,
                             VideoList, errors)
from serve.search_form import (ID_PATTERN, MAX_TOP, SEARCH_OPENAPI, check_id, check_size, check_upload, field_bool,
                               field_int, read_search_request)
from serve.settings import ServeSettings
from serve.slots import DecodeSlots
from serve.video_list import MAX_LIMIT, MAX_QUERY, name_of, video_page

VideoId = Annotated[str, PathParam(pattern=ID_PATTERN, description="32 lowercase hex characters (content hash)")]
STATUS_TTL_S = 2.0  # status records are re-listed at most this often per replica
STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}

api = FastAPI(
    title="AstraDup", version="0.1.0", docs_url="/docs", redoc_url=None,
    description="Find where a video was copied from: upload a query or name an indexed video; "
                "browse indexed videos, their matches and matched intervals; review matches.")
install_error_handlers(api)  # every refusal answers {"error": "..."} (serve/api_errors.py)
install_guard(api)  # Host, API key and body size, before any route (serve/guard.py)


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query_id: Annotated[str, Field(pattern=ID_PATTERN, description="the query video (indexed or uploaded)")]
    source_id: Annotated[str, Field(pattern=ID_PATTERN, description="the indexed video it matched")]
    decision: Literal["confirmed", "rejected"]
    note: Annotated[str, Field(max_length=500)] = ""


@serve.deployment(name="Gateway", max_ongoing_requests=64)
@serve.ingress(api)
class Gateway:
    def __init__(self, cfg: Config, settings: ServeSettings, search) -> None:
        self.cfg = cfg
        self.settings = settings
        self.search = search
        self.shards = Catalog(cfg).shards  # read-only here: status records and features for /videos
        self.thumbs = ThumbCache(Path(cfg.data_dir) / "thumbs", cfg.s3_endpoint)
        self.metrics = Metrics()
        self._status: tuple[float, dict[str, dict]] | None = None
        self._status_lock = threading.Lock()
        self._heads: dict[str, str | None] = {}
        # Uploads held in this gateway's memory at once: the decode slots of the search replicas.
        replicas = 1 if is_lite_uri(cfg.resolved_milvus_uri) else settings.search_replicas
        self.uploads = DecodeSlots(settings.decode_slots * replicas, settings.decode_retry_after_s)  # video id -> head_hash of its features (fixed per id)
        self._index_html = (STATIC_DIR / "index.html").read_text()
        self._static = {name: (STATIC_DIR / name).read_bytes() for name in STATIC_TYPES}
        state.GATEWAY.update(api_key=settings.api_key, metrics=self.metrics, upload_limit=settings.max_upload_bytes,
                             hosts=HostPolicy(settings.bind_host, tuple(settings.allowed_hosts)))

    # ------------------------------------------------------------------ helpers

    def _statuses(self, fresh: bool = False) -> dict[str, dict]:
        with self._status_lock:
            if fresh or self._status is None or time.monotonic() - self._status[0] > STATUS_TTL_S:
                self._status = (time.monotonic(), self.shards.latest_status())
            return self._status[1]

    def _indexed(self, video_id: str) -> dict:
        row = self.shards.status_of(video_id, fresh=False)  # by id: O(1), no whole status listing
        if row is None:
            raise ApiError(404, f"{video_id}: not in the index")
        if row["status"] != STATUS_OK:
            raise ApiError(404, f"{video_id}: not indexed ({row['status']})")
        return row

    def _record(self, video_id: str, row: dict) -> Indexed:
        """What /media and /thumbs check a file against before serving it (serve.media.open_verified).

        The head hash sits in the features' meta; an id is the hash of the whole content, so it
        never changes for an id and is read once per replica. Records indexed before head hashes
        existed give None: their files are checked on size alone.
        """
        if video_id not in self._heads:
            f = self.shards.load_features([video_id]).get(video_id)
            if f is None:
                return Indexed(row["uri"], row.get("size"), None)  # not cached: the shard may come back
            h = f.meta.get("head_hash")
            self._heads[video_id] = h if isinstance(h, str) and h else None
        return Indexed(row["uri"], row.get("size"), self._heads[video_id])


    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index_page(self) -> HTMLResponse:
        return HTMLResponse(self._index_html)

    @api.get("/static/{name}", include_in_schema=False)
    def static_file(self, name: str) -> Response:
        if name not in STATIC_TYPES:
            raise ApiError(404, "no such file")
        return Response(self._static[name], media_type=STATIC_TYPES[name],
                        headers={"Cache-Control": "no-cache"})

    @api.get("/healthz", summary="Liveness: the gateway answers and the search deployment responds",
             response_model=HealthOut, responses=errors(503))
    async def healthz(self) -> dict:
        async def ping() -> dict:
            return await self.search.ping.remote()

        try:
            await asyncio.wait_for(ping(), timeout=10)
        except Exception as e:
            raise ApiError(503, f"search deployment not responding: {type(e).__name__}") from None
        statuses = await asyncio.to_thread(self._statuses)
        # Damaged shards are skipped, not fatal (ShardStore._guarded); the count tells the operator.
        return {"status": "ok", "videos": sum(1 for r in statuses.values() if r["status"] == STATUS_OK),
                "shards_quarantined": len(self.shards.quarantined(refresh=False)), **self.metrics.counts}

    @api.get("/stats", summary="Shards, vectors, and per vector index the rows ready and waiting for a build",
             response_model=StatsOut, responses=errors(401, 503))
    async def stats(self) -> dict:
        return await replica_answer(self.search.stats.remote())

    # ------------------------------------------------------------------ search

    @contextmanager
    def _searching(self, kind: str):
        """Count and time one search request by kind and outcome (ok / rejected: a 4xx / failed)."""
        rec = {"kind": kind, "outcome": "rejected"}
        t0 = time.perf_counter()
        try:
            yield rec
            rec["outcome"] = "ok"
        except (ApiError, StarletteHTTPException):  # a 4xx (BodyTooLarge is an HTTPException)
            raise
        except Exception:
            rec["outcome"] = "failed"
            raise
        finally:
            self.metrics.search(rec["kind"], rec["outcome"], time.perf_counter() - t0)

    @api.post("/search", openapi_extra=SEARCH_OPENAPI, response_model=SearchOut,
              responses=errors(401, 403, 404, 413, 415, 502, 503),
              summary="Ranked matches of an uploaded video or fingerprint, an indexed video id or an s3:// URI")
    async def search(self, request: Request) -> dict:
        with self._searching("invalid") as rec:
            fields, upload, part = await read_search_request(request, self.settings.max_upload_bytes)
            top = field_int(fields.get("top", self.cfg.search.top), "top", 1, MAX_TOP)
            include_none = field_bool(fields.get("include_none", False), "include_none")
            if upload is not None and part == "hashes":
                rec["kind"] = "hashes"
                return await self._search_hashes(upload, top, include_none)
            if upload is not None:
                rec["kind"] = "upload" if part == "file" else "fingerprint"
                # An upload is held in memory from here until the search replica answers: no more
                # at once than the search replicas have decode slots (the rest wait on disk, spooled
                # by the form parser, and are told when to come back).
                if not self.uploads.try_take():
                    upload.file.close()
                    raise ApiError(503, f"busy: {self.uploads.size} uploads already being searched; retry in "
                                        f"{self.uploads.retry_after_s} s (searches by video_id are not affected)",
                                   {"Retry-After": str(self.uploads.retry_after_s)})
                try:
                    data = await upload.read()
                    upload.file.close()
                    name = Path((upload.filename or "").replace("\\", "/")).name[:200]
                    if part == "fingerprint":  # parsed and checked in the search replica (FingerprintError -> 422)
                        check_size(data, self.settings.max_upload_bytes)
                        return await replica_answer(self.search.search_fingerprint.remote(data, top, include_none, name))
                    container = check_upload(data, self.settings.max_upload_bytes)
                    return await replica_answer(self.search.search_upload.remote(data, container, top, include_none,
                                                                             name))
                finally:
                    self.uploads.give_back()
            if "video_id" in fields:
                rec["kind"] = "video"
                return await replica_answer(self.search.search_video.remote(check_id(fields["video_id"]), top))
            rec["kind"] = "uri"
            uri = fields["uri"]
            if not isinstance(uri, str) or not uri.startswith("s3://"):
                raise ApiError(400, "uri must be s3://bucket/key (local paths are never read: upload the file)")
            return await replica_answer(self.search.search_uri.remote(uri, top, include_none))

    async def _search_hashes(self, upload: UploadFile, top: int, include_none: bool) -> dict:
        """A vPDQ hash file: size-checked here (it is text, far below a video's limit), parsed and
        matched in the search replica, which answers 422 naming the line of a malformed one."""
        from astradup.io.vpdq_file import MAX_BYTES

        try:
            data = await upload.read(MAX_BYTES + 1)
        finally:
            upload.file.close()
        if not data:
            raise ApiError(400, "empty hash file")
        if len(data) > MAX_BYTES:
            raise ApiError(413, f"hash file is over the limit of {MAX_BYTES} bytes")
        name = Path((upload.filename or "").replace("\\", "/")).name[:200]
        return await replica_answer(self.search.search_hashes.remote(data, top, include_none, name))


    @api.get("/videos", summary="Indexed (or failed, or deleted) videos", response_model=VideoList,
             responses=errors(401))
    def videos(self, status: Literal["ok", "failed", "deleted", "all"] = "ok",
               q: Annotated[str, Query(max_length=MAX_QUERY, description="part of the file name")] = "",
               limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="rows per page")] = 100,
               offset: Annotated[int, Query(ge=0, le=10**9, description="rows to skip (name order)")] = 0) -> dict:
        total, page = video_page(self._statuses(), status, q, offset, limit)
        end = offset + len(page)
        return {"total": total, "offset": offset, "next_offset": end if end < total else None,
                "videos": [self._video_row(vid, r) for vid, r in page]}

    @staticmethod
    def _video_row(vid: str, r: dict) -> dict:
        return {"video_id": vid, "name": name_of(r), "uri": r.get("uri"),
                "status": r["status"], "error": r.get("error") or "", "duration": r.get("duration"),
                "size": r.get("size"), "at": r["at"].isoformat() if r.get("at") else None}

    @api.get("/videos/{video_id}", summary="One video: its status record and, when indexed, its metadata",
             response_model=VideoDetail, response_model_exclude_unset=True, responses=errors(401, 404))
    def video(self, video_id: VideoId) -> dict:
        row = self.shards.status_of(video_id, fresh=False) or self.shards.status_of(video_id)
        if row is None:
            raise ApiError(404, f"{video_id}: not in the index")
        out = self._video_row(video_id, row)
        if row["status"] == STATUS_OK:
            f = self.shards.load_features([video_id]).get(video_id)
            if f is not None:
                keep = ("duration", "fps", "width", "height", "vcodec", "acodec", "container", "size")
                out.update(meta={k: f.meta[k] for k in keep if k in f.meta}, frames=int(len(f.timestamps)),
                           has_audio=f.has_audio)
        return out

    @api.get("/videos/{video_id}/matches", summary="The indexed video searched against the rest of the index",
             response_model=SearchOut, responses=errors(401, 404, 503))
    async def video_matches(self, video_id: VideoId, top: Annotated[int, Query(ge=1, le=MAX_TOP)] = 10) -> dict:
        with self._searching("video"):
            return await replica_answer(self.search.search_video.remote(video_id, top))

    @api.delete("/videos/{video_id}", summary="Remove a video's vectors (its records stay, marked deleted)",
                response_model=DeleteOut, responses=errors(401, 404, 409))
    async def delete_video(self, video_id: VideoId) -> dict:
        res = await replica_answer(self.search.delete.remote(video_id))
        await asyncio.to_thread(self._statuses, True)
        shutil.rmtree(self.thumbs.root / video_id, ignore_errors=True)
        return res

    # ------------------------------------------------------------------ media

    # GET and HEAD as two routes of one handler: one route for both methods gives both the same
    # OpenAPI operation id, which the schema forbids.
    @api.head("/media/{video_id}", response_class=Response, operation_id="media_head",
              summary="The headers of /media/{video_id} (size, type, ranges accepted), no body",
              responses={200: {"content": {"video/*": {}}, "description": "the whole file's headers"},
                         206: {"content": {"video/*": {}}, "description": "the range's headers"},
                         **errors(401, 404, 416)})
    @api.get("/media/{video_id}", response_class=Response, operation_id="media",
             summary="The video file of an indexed id, with HTTP range requests (206) for seeking",
             responses={200: {"content": {"video/*": {}}, "description": "the whole file"},
                        206: {"content": {"video/*": {}}, "description": "the range asked for"},
                        **errors(401, 404, 416)})
    def media(self, video_id: VideoId, request: Request) -> Response:
        row = self._indexed(video_id)
        uri = row["uri"]
        try:  # the file read below is the one checked: a regular file, the indexed size and head
            f, size = open_verified(self._record(video_id, row), self.cfg.s3_endpoint)
        except MediaGone as e:
            raise ApiError(404, f"{video_id}: {e}") from None
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600"}
        try:
            rng = parse_range(request.headers.get("range"), size)
        except RangeNotSatisfiable as e:
            f.close()
            raise ApiError(416, f"range not satisfiable: {e}", {"Content-Range": f"bytes */{size}"}) from None
        if rng is None:
            status, start, length = 200, 0, size
        else:
            status, start, length = 206, rng[0], rng[1] - rng[0] + 1
            headers["Content-Range"] = f"bytes {rng[0]}-{rng[1]}/{size}"
        headers["Content-Length"] = str(length)
        if request.method == "HEAD":
            f.close()
            return Response(status_code=status, headers=headers, media_type=content_type(uri))
        # stream_range closes f when done; the task closes it if the stream never started
        return StreamingResponse(stream_range(f, start, length), status_code=status, headers=headers,
                                 media_type=content_type(uri), background=BackgroundTask(f.close))

    @api.get("/thumbs/{video_id}", summary="A JPEG frame of an indexed video at t seconds (made once, cached)",
             response_class=Response, responses={200: {"content": {"image/jpeg": {}}}, **errors(401, 404)})
    def thumb(self, video_id: VideoId, t: Annotated[float, Query(ge=0, le=7 * 86400)] = 0.0) -> Response:
        row = self._indexed(video_id)
        try:
            jpeg = self.thumbs.get(video_id, self._record(video_id, row), t, row.get("duration"))
        except MediaGone as e:
            raise ApiError(404, f"{video_id}: {e}") from None
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    # ------------------------------------------------------------------ reviews

    @api.post("/reviews", summary="Confirm or reject a match; a rejected pair is not reported again",
              response_model=ReviewOut, responses=errors(401, 404))
    async def post_review(self, review: ReviewIn) -> dict:
        if review.query_id == review.source_id:
            raise ApiError(400, "query_id and source_id are the same video")
        return await replica_answer(self.search.review.remote(review.query_id, review.source_id, review.decision,
                                                          review.note))

    @api.get("/reviews", summary="Verdicts given so far, newest first", response_model=ReviewList,
             responses=errors(401))
    async def reviews(self, decision: Literal["confirmed", "rejected"] | None = None,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
        return await replica_answer(self.search.reviews_list.remote(decision, limit))

    @api.get("/reviews/queue", summary="Low-confidence matches between indexed videos waiting for a verdict",
             response_model=QueueOut, responses=errors(401))
    async def review_queue(self, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict:
        return await replica_answer(self.search.review_queue.remote(limit))
