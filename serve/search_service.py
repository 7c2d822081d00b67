"""Search and fusion as a Serve deployment: the one process that opens the vector store.

Query features are the CLI's (``Searcher.read_query`` here, ``Searcher.embed_query`` with the embedder
deployment through ``RemoteEmbedder``), then ``Searcher`` for KNN, fusion and segments. Human
verdicts are applied to every answer by ``astradup.reviews.Verdicts`` (as in the CLI and the
report), so a rejected pair is never reported and a confirmed one carries its decision, whichever
route asked.

Methods return plain dicts; a request the caller got wrong comes back as
``{"error": message, "status": http_status}`` rather than as an exception, because exceptions
cross a deployment handle wrapped in Ray's own types.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import threading
import time
from pathlib import Path

from ray import serve

from astradup import telemetry
from astradup.catalog import DELETE_ALREADY, DELETE_DONE, Catalog
from astradup.config import Config
from astradup.errors import MediaError, path_free
from astradup.plain import plain
from astradup.fingerprint import FingerprintError
from astradup.io.gate import HEAD_BYTES, Container, refusal, sniff
from astradup.io.remote import filesystem
from astradup.match.common import CommonSegment
from astradup.records import STATUS_OK, VideoMatch
from astradup.reviews import ReviewStore, Verdicts
from astradup.reviews import reviews_path as _reviews_path
from astradup.search import Query, Searcher
from astradup.uris import AllowList, BadUri, split_s3
from serve.embedding import RemoteEmbedder
from serve.settings import ServeSettings
from serve.slots import DecodeSlots, decode_slot

_INFLIGHT = telemetry.inflight(telemetry.SEARCH_INFLIGHT)  # searches inside this replica right now
# One answer for every "where" refusal of a uri (outside search.allowed_uris, no such object or
# bucket, no permission): telling them apart would let a client map what exists, and how large it
# is, in buckets the server's credentials reach but the client may not read.
URI_REFUSED = ("uri not allowed or not readable: only existing objects under search.allowed_uris "
               "(default: the buckets the index was built from) can be searched")
ALLOW_TTL_S = 10.0  # the default allow-list (buckets of indexed uris) is recomputed at most this often
S3_CHUNK = 8 << 20  # bytes per ranged GET while a query object is copied


def reviews_path(cfg: Config) -> Path:
    return _reviews_path(cfg.data_dir)


def _tighter(a: float, b: float) -> float:
    """The stricter of two limits where 0 means none."""
    return min(x for x in (a, b) if x > 0) if a > 0 or b > 0 else 0


def _error(status: int, message: str) -> dict:
    return {"error": message, "status": status}


class BadMedia(Exception):
    """The query's bytes could not be decoded: the client's fault, answered 422."""


class UriRefused(Exception):
    """A query object that is not read: ``status`` and ``message`` are the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def fetch_query_object(fs, bucket: str, key: str, limit: int) -> tuple[str, Container]:
    """A temp copy of ``s3://bucket/key`` (the caller unlinks it) and its sniffed container.

    The object is read as one stream: its first HEAD_BYTES are sniffed before anything else is
    fetched (a DASH/HLS manifest or a picture costs one small GET and reaches no decoder), and the
    bytes sniffed are the bytes copied, so an object replaced meanwhile cannot slip past the check.
    The copy stops at ``limit`` bytes whatever the object's size said. Every "cannot read it" is
    URI_REFUSED (403), the same as outside the allow-list; sizes are never echoed.
    """
    try:
        # cache_type "none": each read is one ranged GET of exactly the bytes asked for.
        src = fs.open(f"{bucket}/{key}", "rb", cache_type="none")
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError):
        raise UriRefused(403, URI_REFUSED) from None
    except Exception as e:  # S3 itself failing is the server's problem, not the client's
        raise UriRefused(502, f"S3 error: {type(e).__name__}") from None
    fd, tmp = -1, ""
    try:
        with src:
            if (getattr(src, "details", None) or {}).get("type", "file") != "file":
                raise UriRefused(403, URI_REFUSED)  # a "folder" (a common prefix) is no object either
            size = int(src.size or 0)
            if size == 0:
                raise UriRefused(422, "uri: empty object")
            if size > limit:
                raise UriRefused(413, f"uri: object is over the limit of {limit} bytes")
            head = src.read(HEAD_BYTES)
            container = sniff(head, size)
            if container is None:
                raise UriRefused(415, f"uri: {refusal(head)}")
            fd, tmp = tempfile.mkstemp(prefix="astradup-query-", suffix=container.suffix)
            with os.fdopen(fd, "wb") as dst:
                fd = -1
                n = len(head)
                dst.write(head)
                while chunk := src.read(min(S3_CHUNK, limit + 1 - n)):
                    n += len(chunk)
                    if n > limit:
                        raise UriRefused(413, f"uri: object is over the limit of {limit} bytes")
                    dst.write(chunk)
        return tmp, container
    except UriRefused:
        _discard(fd, tmp)
        raise
    except (FileNotFoundError, PermissionError):  # gone or locked while being read
        _discard(fd, tmp)
        raise UriRefused(403, URI_REFUSED) from None
    except Exception as e:
        _discard(fd, tmp)
        raise UriRefused(502, f"S3 error: {type(e).__name__}") from None


def _discard(fd: int, tmp: str) -> None:
    if fd >= 0:
        os.close(fd)
    if tmp:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@serve.deployment(name="SearchService", max_ongoing_requests=4)
class SearchService:
    async def __init__(self, cfg: Config, settings: ServeSettings, embedder) -> None:
        info = await embedder.info.remote()
        self.cfg = cfg
        self.settings = settings
        self.catalog = Catalog(cfg, embedder=RemoteEmbedder(embedder, info["dim"], info["name"]))
        self.searcher = Searcher(cfg, self.catalog)
        self.reviews = ReviewStore(reviews_path(cfg))
        # Open the vector store now: a Milvus Lite file held by another process fails the
        # deployment at start-up with that reason, not the first search.
        self.catalog.vectors
        self._queue: tuple[tuple, list[dict]] | None = None
        self._queue_lock = threading.Lock()
        # Uploads and uri searches past this many at once answer 503 + Retry-After (serve/slots.py).
        self.decodes = DecodeSlots(settings.decode_slots, settings.decode_retry_after_s)
        self._init_uri_access()

    def _init_uri_access(self) -> None:
        """The configured allow-list, parsed once (load_config already refused a malformed entry),
        and the cache of the default one."""
        self._allow_configured = AllowList.parse(self.cfg.search.allowed_uris) if self.cfg.search.allowed_uris \
            else None
        self._allow_default: tuple[float, AllowList] | None = None
        self._allow_lock = threading.Lock()

    def allow_list(self) -> AllowList:
        """``search.allowed_uris``, or (empty) the buckets of the indexed uris: read from the
        catalog's incremental index at most every ALLOW_TTL_S, so a search costs no extra listing."""
        if self._allow_configured is not None:
            return self._allow_configured
        with self._allow_lock:
            now = time.monotonic()
            if self._allow_default is None or now - self._allow_default[0] > ALLOW_TTL_S:
                self._allow_default = (now, AllowList.from_indexed(self.catalog.shards.indexed_buckets()))
            return self._allow_default[1]

    # ------------------------------------------------------------------ queries

    def _query(self, path: str, uri: str) -> Query:
        """``Searcher.query_from_file`` in its two halves under the service's tighter decode limits:
        whatever fails in ``read_query`` is bad input (BadMedia -> 422), whatever fails after it
        (embedder, store) is a server fault."""
        dcfg = self.cfg.decode
        limit = self.settings.max_query_seconds
        if limit and (not dcfg.max_seconds or dcfg.max_seconds > limit):
            dcfg = dataclasses.replace(dcfg, max_seconds=limit)
        dcfg = dataclasses.replace(dcfg, max_decode_seconds=_tighter(dcfg.max_decode_seconds,
                                                                     self.settings.max_decode_seconds),
                                   max_pixels=int(_tighter(dcfg.max_pixels, self.settings.max_query_pixels)))
        try:
            media = self.searcher.read_query(path, uri, decode=dcfg)
        except MediaError as e:
            raise BadMedia(e.reason) from e
        except Exception as e:  # a decoder crash on hostile bytes is still the bytes' fault
            raise BadMedia(path_free(f"cannot decode: {type(e).__name__}: {e}")) from e
        return self.searcher.embed_query(*media)

    def _answer(self, q: Query, kind: str, top: int, include_none: bool, t0: float, name: str = "") -> dict:
        verdicts = Verdicts.for_video(self.reviews, q.features.video_id)
        matches, common = self.searcher.search_common(q, top + verdicts.rejected_count(), include_none=include_none)
        return self._report(q.features.video_id, kind, verdicts.matches(q.features.video_id, matches, top), t0, {
            "name": name, "duration": q.features.meta.get("duration"), "has_audio": q.features.has_audio,
            "frames": int(len(q.features.timestamps)),
            "searched_seconds": self._searched_seconds(q)}, common)

    def _searched_seconds(self, q: Query) -> float | None:
        limit = self.settings.max_query_seconds
        d = q.features.meta.get("duration")
        return float(limit) if limit and d and d > limit else None

    def _report(self, query_id: str, kind: str, matches: list[VideoMatch], t0: float, query: dict,
                common: list[CommonSegment] | tuple = ()) -> dict:
        """The answer's JSON of matches the verdicts have been applied to (``Verdicts.matches``);
        ``common``: the query's stretches that recur in many library videos (match/common.py),
        listed once with their count and counted in no match."""
        # Only the rows of the matches: O(matches) per query, not a dict of every indexed video.
        status = self.catalog.shards.statuses_of(m.source_id for m in matches)
        out = []
        for m in matches:
            row = status.get(m.source_id) or {}
            d = plain(m.to_dict())
            d.update(name=Path(m.source_uri).name, duration=row.get("duration"))
            out.append(d)
        return plain({"query": {"video_id": query_id, "kind": kind, **query}, "matches": out,
                      "common": [c.to_dict() for c in common],
                      "took_ms": round(1000 * (time.time() - t0), 1)})

    @_INFLIGHT.track
    @decode_slot
    def search_upload(self, data: bytes, container: str, top: int, include_none: bool = False,
                      name: str = "") -> dict:
        t0 = time.time()
        fd, tmp = tempfile.mkstemp(prefix="astradup-query-", suffix=Container[container].suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            q = self._query(tmp, "upload")
        except BadMedia as e:
            return _error(422, f"upload: {e}")
        finally:
            os.unlink(tmp)
        return self._answer(q, "upload", top, include_none, t0, name=name)

    @_INFLIGHT.track
    def search_fingerprint(self, data: bytes, top: int, include_none: bool = False, name: str = "") -> dict:
        """Search with a fingerprint file's features (astradup/fingerprint.py): no decode, so no
        decode slot; the bytes are checked as a hostile file (size, version, schema, lengths,
        finiteness, embedder) and any refusal is a 422 naming the reason."""
        t0 = time.time()
        try:
            q = self.searcher.query_from_fingerprint(data, self.settings.max_upload_bytes, name="fingerprint")
        except FingerprintError as e:
            return _error(422, f"fingerprint: {e.reason}")
        return self._answer(q, "fingerprint", top, include_none, t0, name=name)

    @_INFLIGHT.track
    @decode_slot
    def search_uri(self, uri: str, top: int, include_none: bool = False) -> dict:
        """Search with an S3 object: inside the allow-list, existing, within the upload limit and
        sniffed as a video container (the same gate as uploads) before any decoder sees a byte."""
        t0 = time.time()
        try:
            bucket, key = split_s3(uri)
        except BadUri as e:
            return _error(400, f"uri must be s3://bucket/key: {e}")
        if not self.allow_list().allows(bucket, key):
            return _error(403, URI_REFUSED)
        try:
            fs = filesystem(uri, self.cfg.s3_endpoint)
            tmp, _ = fetch_query_object(fs, bucket, key, self.settings.max_upload_bytes)
        except UriRefused as e:
            return _error(e.status, e.message)
        try:
            q = self._query(tmp, uri)
        except BadMedia as e:
            return _error(422, f"{uri}: {e}")
        finally:
            os.unlink(tmp)
        return self._answer(q, "uri", top, include_none, t0, name=key.rsplit("/", 1)[-1])

    @_INFLIGHT.track
    def search_hashes(self, data: bytes, top: int, include_none: bool = False, name: str = "") -> dict:
        """A vPDQ hash file (another tool's video) matched by vPDQ's rule against the stored PDQ
        hashes (astradup/vpdq_search.py); a malformed file is the client's: 422 naming the line."""
        from astradup.io.vpdq_file import HashFileError, parse_vpdq
        from astradup.vpdq_search import query_id as hash_file_id, search_hashes

        t0 = time.time()
        try:
            query = parse_vpdq(data)
        except HashFileError as e:
            return _error(422, f"hash file: {e}")
        query_id = hash_file_id(data)
        verdicts = Verdicts.for_video(self.reviews, query_id)
        matches = search_hashes(self.catalog.shards, query, top + verdicts.rejected_count(), include_none=include_none)
        ts = query.timestamps
        return self._report(query_id, "hashes", verdicts.matches(query_id, matches, top), t0, {
            "name": name, "duration": float(ts[-1] - ts[0]) if len(ts) else None, "has_audio": False,
            "frames": int(len(query.hashes)), "searched_seconds": None})

    @_INFLIGHT.track
    def search_video(self, video_id: str, top: int) -> dict:
        t0 = time.time()
        try:
            q = self.searcher.indexed_query(video_id)
        except KeyError:
            return _error(404, f"{video_id}: not in the index")
        f = q.features
        verdicts = Verdicts.for_video(self.reviews, video_id)
        matches, common = self.searcher.search_indexed_common(video_id, top + verdicts.rejected_count(), q)
        return self._report(video_id, "video", verdicts.matches(video_id, matches, top), t0, {
            "name": Path(f.uri).name, "duration": f.meta.get("duration"), "has_audio": f.has_audio,
            "frames": int(len(f.timestamps)), "searched_seconds": None}, common)

    # ------------------------------------------------------------------ index changes and verdicts

    def delete(self, video_id: str) -> dict:
        """Exactly one of several concurrent deletes of an id answers 200 and writes its tombstone
        (``Catalog.remove`` serialises them); the rest answer 409 "already deleted"."""
        res = self.catalog.remove(video_id)
        if res.state == DELETE_ALREADY:
            return _error(409, f"{video_id}: already deleted")
        if res.state != DELETE_DONE:
            return _error(404, f"{video_id}: not in the index")
        return {"deleted": video_id, "vectors_removed": int(res.vectors_removed or 0)}

    def review(self, query_id: str, source_id: str, decision: str, note: str = "") -> dict:
        row = self.catalog.shards.status_of(source_id)
        if row is None or row["status"] != STATUS_OK:
            return _error(404, f"{source_id}: not in the index")
        try:
            r = self.reviews.record(query_id, source_id, decision, note)
        except ValueError as e:
            return _error(400, str(e))
        return r.to_dict()

    def reviews_list(self, decision: str | None, limit: int) -> dict:
        return {"reviews": [r.to_dict() for r in self.reviews.all(decision, limit)]}

    def review_queue(self, limit: int) -> dict:
        """Pairs of indexed videos whose match is flagged for review (low confidence) and that no
        one has confirmed or rejected yet, least confident first.

        Read from the dedup job's pairs (``astradup.dedup``; ``python -m jobs.dedup`` or
        ``astradup dedup`` writes them): a request never searches the library pair by pair. The list
        is cached until the job's manifest, the set of indexed videos or the verdicts change.
        """
        from astradup.dedup.results import review_items
        from astradup.dedup.store import MANIFEST, dedup_dir

        t0 = time.time()
        status = self.catalog.shards.latest_status()
        live = {v: r for v, r in status.items() if r["status"] == STATUS_OK}
        try:
            mtime = (dedup_dir(self.cfg) / MANIFEST).stat().st_mtime_ns
        except FileNotFoundError:
            mtime = 0
        key = (tuple(sorted(live)), self.reviews.version(), mtime)
        with self._queue_lock:
            if self._queue is None or self._queue[0] != key:
                self._queue = (key, plain(review_items(self.cfg, live, Verdicts.of_store(self.reviews))))
            items = self._queue[1]
        return {"items": items[:limit], "total": len(items), "took_ms": round(1000 * (time.time() - t0), 1),
                "joined": bool(mtime)}

    def stats(self) -> dict:
        """``Catalog.stats``: shards, vectors, and per vector index the rows ready and the rows waiting
        for a build (after a backfill or a Milvus restart, searches are slow until none wait)."""
        return plain(self.catalog.stats())

    async def ping(self) -> dict:
        """On the replica's event loop, not in its thread pool: answers while decodes run."""
        return {"ok": True}
