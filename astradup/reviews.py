"""Human verdicts on matches: a pair marked confirmed or rejected, remembered across restarts.

A verdict is about two videos, not about who was the query: if A was rejected as a copy of B,
searching with B must not report A either, so a pair is keyed by its two ids in sorted order.
The store is one SQLite file in the data dir: several processes (Serve replicas, the CLI) may
read and write it at once, which SQLite's own locking handles, and one row per pair keeps the
latest verdict without any compaction.
"""
from __future__ import annotations

import re
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

CONFIRMED = "confirmed"
REJECTED = "rejected"
DECISIONS = (CONFIRMED, REJECTED)
NOTE_MAX = 500  # characters: a verdict's note is a remark, not a document
_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_BUSY_TIMEOUT_S = 10.0  # another replica writing at the same moment waits, never fails

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


def check_id(video_id: str) -> str:
    if not isinstance(video_id, str) or not _ID_RE.match(video_id):
        raise ValueError(f"invalid video id {str(video_id)[:80]!r}: expected 32 lowercase hex characters")
    return video_id


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
        check_id(query_id)
        check_id(source_id)
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
