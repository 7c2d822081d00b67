"""Search and fusion as a Serve deployment: the one process that opens the vector store.

Query features are the CLI's: decode, pHash and audio here, frame embeddings in the embedder
deployment (through ``RemoteEmbedder``), then ``Searcher`` for KNN, fusion and segments. Human
verdicts (``astradup.reviews``) are applied here, so a rejected pair is never reported, whichever
route asked.

Methods return plain dicts; a request the caller got wrong comes back as
``{"error": message, "status": http_status}`` rather than as an exception, because exceptions
cross a deployment handle wrapped in Ray's own types.
"""
from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from ray import serve

from astradup import telemetry
from astradup.catalog import Catalog
from astradup.config import Config
from astradup.errors import MediaError, path_free
from astradup.features.extract import add_embeddings, cpu_features, mirrored_embeddings
from astradup.io.decode import decode_video
from astradup.io.gate import Container
from astradup.io.ids import content_id
from astradup.io.sources import local_copy, storage_options
from astradup.records import STATUS_OK, VideoMatch, VideoRef
from astradup.reviews import REJECTED, ReviewStore, pair_key
from astradup.search import Query, Searcher
from serve.embedding import RemoteEmbedder
from serve.settings import ServeSettings

STAGE = telemetry.QUERY_STAGE_LATENCY
_INFLIGHT = telemetry.inflight(telemetry.SEARCH_INFLIGHT)  # searches inside this replica right now
S3_URI_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/[^\x00-\x1f]+$")


def reviews_path(cfg: Config) -> Path:
    return Path(cfg.data_dir) / "reviews.sqlite"


def plain(obj):
    """Builtins only: records can carry numpy scalars (a segment's score is a numpy float32),
    which neither JSON nor FastAPI's serializer accept."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def _tighter(a: float, b: float) -> float:
    """The stricter of two limits where 0 means none."""
    return min(x for x in (a, b) if x > 0) if a > 0 or b > 0 else 0


def _error(status: int, message: str) -> dict:
    return {"error": message, "status": status}


class BadMedia(Exception):
    """The query's bytes could not be decoded: the client's fault, answered 422."""


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

    # ------------------------------------------------------------------ queries

    def _query(self, path: str, uri: str) -> Query:
        """``Searcher.query_from_file`` in two halves: whatever fails while decoding is bad input
        (BadMedia -> 422), whatever fails after it (embedder, store) is a server fault."""
        dcfg = self.cfg.decode
        limit = self.settings.max_query_seconds
        if limit and (not dcfg.max_seconds or dcfg.max_seconds > limit):
            dcfg = dataclasses.replace(dcfg, max_seconds=limit)
        dcfg = dataclasses.replace(dcfg, max_decode_seconds=_tighter(dcfg.max_decode_seconds,
                                                                     self.settings.max_decode_seconds),
                                   max_pixels=int(_tighter(dcfg.max_pixels, self.settings.max_query_pixels)))
        try:
            vid = content_id(path)
            with telemetry.timed(STAGE, stage="decode"):
                dec = decode_video(path, VideoRef(vid, uri, os.path.getsize(path)), dcfg)
            with telemetry.timed(STAGE, stage="features"):
                feats = cpu_features(dec, self.cfg, audio_step=self.cfg.audio.query_step)
        except MediaError as e:
            raise BadMedia(e.reason) from e
        except Exception as e:  # a decoder crash on hostile bytes is still the bytes' fault
            raise BadMedia(path_free(f"cannot decode: {type(e).__name__}: {e}")) from e
        emb = self.searcher.embedder
        with telemetry.timed(STAGE, stage="embed"):
            feats = add_embeddings(feats, dec.frames, emb)
            mirror = mirrored_embeddings(dec.frames, emb) if self.cfg.embedder.query_flip else None
        return Query(feats, mirror)

    def _answer(self, q: Query, kind: str, top: int, include_none: bool, t0: float, name: str = "") -> dict:
        decided = self.reviews.decisions_for(q.features.video_id)
        n_rejected = sum(1 for d in decided.values() if d == REJECTED)
        matches = self.searcher.search(q, top + n_rejected, include_none=include_none)
        return self._report(q.features.video_id, kind, matches, decided, top, t0, {
            "name": name, "duration": q.features.meta.get("duration"), "has_audio": q.features.has_audio,
            "frames": int(len(q.features.timestamps)),
            "searched_seconds": self._searched_seconds(q)})

    def _searched_seconds(self, q: Query) -> float | None:
        limit = self.settings.max_query_seconds
        d = q.features.meta.get("duration")
        return float(limit) if limit and d and d > limit else None

    def _report(self, query_id: str, kind: str, matches: list[VideoMatch], decided: dict[str, str], top: int,
                t0: float, query: dict) -> dict:
        status = self.catalog.shards.latest_status()
        out = []
        for m in matches:
            if decided.get(m.source_id) == REJECTED:
                continue
            row = status.get(m.source_id) or {}
            d = plain(m.to_dict())
            d.update(name=Path(m.source_uri).name, duration=row.get("duration"), decision=decided.get(m.source_id))
            out.append(d)
            if len(out) >= top:
                break
        return plain({"query": {"video_id": query_id, "kind": kind, **query}, "matches": out,
                      "took_ms": round(1000 * (time.time() - t0), 1)})

    @_INFLIGHT.track
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
    def search_uri(self, uri: str, top: int, include_none: bool = False) -> dict:
        t0 = time.time()
        if not S3_URI_RE.match(uri):
            return _error(400, "uri must be s3://bucket/key (local paths are never read: upload the file)")
        try:
            import fsspec

            fs = fsspec.filesystem("s3", **storage_options(self.cfg.s3_endpoint))
            size = int(fs.size(uri))
        except FileNotFoundError:
            return _error(404, f"{uri}: no such object")
        except PermissionError:
            return _error(403, f"{uri}: access denied")
        except Exception as e:
            return _error(502, f"{uri}: S3 error: {type(e).__name__}")
        if size == 0:
            return _error(422, f"{uri}: empty object")
        if size > self.settings.max_upload_bytes:
            return _error(413, f"{uri}: {size} bytes is over the limit of {self.settings.max_upload_bytes}")
        try:
            with local_copy(uri, self.cfg.s3_endpoint) as path:
                q = self._query(path, uri)
        except BadMedia as e:
            return _error(422, f"{uri}: {e}")
        except FileNotFoundError:
            return _error(404, f"{uri}: no such object")
        return self._answer(q, "uri", top, include_none, t0, name=uri.rsplit("/", 1)[-1])

    @_INFLIGHT.track
    def search_video(self, video_id: str, top: int) -> dict:
        t0 = time.time()
        f = self.catalog.shards.load_features([video_id]).get(video_id)
        if f is None:
            return _error(404, f"{video_id}: not in the index")
        decided = self.reviews.decisions_for(video_id)
        n_rejected = sum(1 for d in decided.values() if d == REJECTED)
        matches = self.searcher.search(Query(f, None), top + n_rejected, exclude=video_id, include_none=False)
        return self._report(video_id, "video", matches, decided, top, t0, {
            "name": Path(f.uri).name, "duration": f.meta.get("duration"), "has_audio": f.has_audio,
            "frames": int(len(f.timestamps)), "searched_seconds": None})

    # ------------------------------------------------------------------ index changes and verdicts

    def delete(self, video_id: str) -> dict:
        removed = self.catalog.delete(video_id)
        if removed is None:
            return _error(404, f"{video_id}: not in the index")
        return {"deleted": video_id, "vectors_removed": int(removed)}

    def review(self, query_id: str, source_id: str, decision: str, note: str = "") -> dict:
        row = self.catalog.shards.latest_status().get(source_id)
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

        Every indexed video is searched against the rest, so the list is cached until the set of
        indexed videos or the verdicts change.
        """
        t0 = time.time()
        status = self.catalog.shards.latest_status()
        live = tuple(sorted(v for v, r in status.items() if r["status"] == STATUS_OK))
        key = (live, self.reviews.version())
        with self._queue_lock:
            if self._queue is None or self._queue[0] != key:
                self._queue = (key, self._scan_queue(live, status))
            items = self._queue[1]
        return {"items": items[:limit], "total": len(items), "took_ms": round(1000 * (time.time() - t0), 1)}

    def _scan_queue(self, live: tuple[str, ...], status: dict) -> list[dict]:
        best: dict[str, dict] = {}
        for vid in live:
            f = self.catalog.shards.load_features([vid]).get(vid)
            if f is None:
                continue
            decided = self.reviews.decisions_for(vid)
            for m in self.searcher.search(Query(f, None), exclude=vid, include_none=False):
                if not m.review or m.source_id in decided:
                    continue
                k = pair_key(vid, m.source_id)
                if k in best and best[k]["fused"] >= m.fused:
                    continue
                d = plain(m.to_dict())
                d.update(query_id=vid, query_name=Path(f.uri).name, name=Path(m.source_uri).name,
                         duration=(status.get(m.source_id) or {}).get("duration"),
                         query_duration=f.meta.get("duration"))
                best[k] = d
        return plain(sorted(best.values(), key=lambda d: (d["confidence"], -d["fused"], d["query_id"])))

    def ping(self) -> dict:
        return {"ok": True}
