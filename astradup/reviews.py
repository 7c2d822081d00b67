"""Human verdicts on matches: a pair marked confirmed or rejected, remembered across restarts.

A verdict is about two videos, not about who was the query: if A was rejected as a copy of B,
searching with B must not report A either, so a pair is keyed by its two ids in sorted order.
The store is one SQLite file in the data dir: several processes (Serve replicas, the CLI) may
read and write it at once, which SQLite's own locking handles, and one row per pair keeps the
latest verdict without any compaction.

Every listing of matches or pairs (``astradup search``, ``dedup``, ``report``, the backfill's
report, the HTTP service) passes them through :class:`Verdicts` (``apply`` / ``matches``), the one
place where a rejected pair is dropped and a confirmed one is marked (``VideoMatch.decision``), so
no path can forget a reviewer's word.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable, Mapping

from astradup.errors import AstraDupError
from astradup.io.ids import check_video_id
from astradup.records import VideoMatch

CONFIRMED = "confirmed"
REJECTED = "rejected"
DECISIONS = (CONFIRMED, REJECTED)
NOTE_MAX = 500  # characters: a verdict's note is a remark, not a document
_BUSY_TIMEOUT_S = 10.0  # another replica writing at the same moment waits, never fails
REVIEWS_FILE = "reviews.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    pair TEXT PRIMARY KEY,      -- "<smaller id>:<larger id>"
    query_id TEXT NOT NULL,     -- as the reviewer saw the pair (which side was the query)
    source_id TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('confirmed', 'rejected')),
    note TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL            -- unix seconds of the latest verdict
)
"""


@dataclass(frozen=True)
class Review:
    query_id: str
    source_id: str
    decision: str
    note: str
    at: float

    def to_dict(self) -> dict:
        return asdict(self)


def pair_key(a: str, b: str) -> str:
    return ":".join(sorted((a, b)))


def reviews_path(data_dir: str | Path) -> Path:
    """The verdicts of an index live beside it, in its data dir."""
    return Path(data_dir) / REVIEWS_FILE


class ReviewStore:
    """Verdicts per unordered pair of video ids, in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one connection shared by a replica's threads
        self._db = sqlite3.connect(str(self.path), timeout=_BUSY_TIMEOUT_S, check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
        self._db.execute(_SCHEMA)

    def record(self, query_id: str, source_id: str, decision: str, note: str = "") -> Review:
        """Store a verdict; a later verdict on the same pair replaces the earlier one."""
        check_video_id(query_id, "query_id")
        check_video_id(source_id, "source_id")
        if query_id == source_id:
            raise ValueError("a video cannot be reviewed against itself")
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, got {str(decision)[:40]!r}")
        note = str(note or "")
        if len(note) > NOTE_MAX:
            raise ValueError(f"note is longer than {NOTE_MAX} characters")
        r = Review(query_id, source_id, decision, note, time.time())
        with self._lock:
            self._db.execute(
                "INSERT INTO reviews (pair, query_id, source_id, decision, note, at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(pair) DO UPDATE SET query_id=excluded.query_id, source_id=excluded.source_id, "
                "decision=excluded.decision, note=excluded.note, at=excluded.at",
                (pair_key(query_id, source_id), r.query_id, r.source_id, r.decision, r.note, r.at))
        return r

    def get(self, a: str, b: str) -> Review | None:
        with self._lock:
            row = self._db.execute("SELECT query_id, source_id, decision, note, at FROM reviews WHERE pair = ?",
                                   (pair_key(a, b),)).fetchone()
        return Review(*row) if row else None

    def forget(self, a: str, b: str) -> bool:
        """Drop a verdict (the pair is reported again); False when there was none."""
        with self._lock:
            cur = self._db.execute("DELETE FROM reviews WHERE pair = ?", (pair_key(a, b),))
        return cur.rowcount > 0

    def decisions_for(self, video_id: str) -> dict[str, str]:
        """other id -> decision, for every reviewed pair that involves ``video_id``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT query_id, source_id, decision FROM reviews WHERE query_id = ? OR source_id = ?",
                (video_id, video_id)).fetchall()
        return {(s if q == video_id else q): d for q, s, d in rows}

    def all(self, decision: str | None = None, limit: int = 1000) -> list[Review]:
        """Latest verdicts, newest first."""
        sql = "SELECT query_id, source_id, decision, note, at FROM reviews"
        args: tuple = ()
        if decision is not None:
            sql += " WHERE decision = ?"
            args = (decision,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY at DESC LIMIT ?", (*args, int(limit))).fetchall()
        return [Review(*r) for r in rows]

    def version(self) -> tuple[int, float]:
        """(count, newest verdict time): changes whenever a verdict is added, replaced or dropped
        by any process, so a cache of review-filtered results knows when to recompute."""
        with self._lock:
            n, at = self._db.execute("SELECT COUNT(*), COALESCE(MAX(at), 0) FROM reviews").fetchone()
        return int(n), float(at)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Verdicts:
    """The verdicts one listing applies, read once: pair key -> decision.

    ``apply`` is the single rule every output path uses: a rejected pair is not listed (whichever
    side was the query), a confirmed one is listed with ``decision="confirmed"``, any other as it was.
    """

    def __init__(self, decided: Mapping[str, str] | None = None) -> None:
        self._decided = dict(decided or {})

    @classmethod
    def load(cls, data_dir: str | Path, video_id: str | None = None) -> "Verdicts":
        """The verdicts of the index in ``data_dir`` (only those involving ``video_id`` when given);
        none when no one has reviewed yet (reading creates no file: a listing leaves the data dir
        as it was)."""
        path = reviews_path(data_dir)
        if not path.is_file():
            return cls()
        try:
            store = ReviewStore(path)
            try:
                return cls.of_store(store) if video_id is None else cls.for_video(store, video_id)
            finally:
                store.close()
        except sqlite3.DatabaseError as e:  # not SQLite, or another schema: say which file, not a traceback
            raise AstraDupError(f"{path}: cannot read the reviewers' verdicts: {e}") from None

    @classmethod
    def of_store(cls, store: ReviewStore) -> "Verdicts":
        return cls({pair_key(r.query_id, r.source_id): r.decision for r in store.all(limit=10 ** 9)})

    @classmethod
    def for_video(cls, store: ReviewStore, video_id: str) -> "Verdicts":
        """Only the verdicts that involve ``video_id`` (one query's listing: O(its verdicts))."""
        return cls({pair_key(video_id, other): d for other, d in store.decisions_for(video_id).items()})

    def decision(self, a: str, b: str) -> str | None:
        return self._decided.get(pair_key(a, b))

    def rejected(self, a: str, b: str) -> bool:
        return self.decision(a, b) == REJECTED

    def rejected_count(self) -> int:
        """How many rejected pairs these verdicts hold: a search asks for this many more matches,
        so dropping them still leaves ``top`` to list."""
        return sum(1 for d in self._decided.values() if d == REJECTED)

    def apply(self, query_id: str, match: VideoMatch) -> VideoMatch | None:
        """The match as it is listed: None when its pair was rejected, else carrying the pair's decision."""
        d = self.decision(query_id, match.source_id)
        if d == REJECTED:
            return None
        return match if d == match.decision else replace(match, decision=d)

    def matches(self, query_id: str, matches: Iterable[VideoMatch], top: int | None = None) -> list[VideoMatch]:
        """``apply`` over one query's ranked matches, keeping the first ``top`` listed ones."""
        out = []
        for m in matches:
            if top is not None and len(out) >= top:
                break
            kept = self.apply(query_id, m)
            if kept is not None:
                out.append(kept)
        return out

    def __len__(self) -> int:
        return len(self._decided)
