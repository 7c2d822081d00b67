"""One page of the video list (GET /videos): filter by status and name, order by name, slice.

The web page's picker pages through a library of any size with it (a library of 100 000 videos
must not become one 100 000-option <select>), and finds a video by part of its name. Pure: status
records in, a page out; the gateway does the HTTP.
"""
from __future__ import annotations

import heapq
from pathlib import PurePosixPath
from typing import Any, Mapping

MAX_LIMIT = 1000  # rows per page, whatever a client asks
MAX_QUERY = 200  # characters of a name filter


def name_of(record: Mapping[str, Any]) -> str:
    """The file name the page shows for a status record (the last part of its uri)."""
    return PurePosixPath(str(record.get("uri") or "")).name


def video_page(statuses: Mapping[str, Mapping[str, Any]], status: str = "ok", q: str = "", offset: int = 0,
               limit: int = 100) -> tuple[int, list[tuple[str, Mapping[str, Any]]]]:
    """(how many match, the ``limit`` matches from ``offset``) in (name, id) order.

    ``status`` "all" keeps every record; ``q`` keeps names containing it (case-insensitive). The
    order is total (the id breaks ties between equal names), so consecutive pages neither repeat
    nor skip a video. Only the first ``offset + limit`` are ordered (a heap), so an early page of a
    huge library costs a pass over it, not a sort.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1 to {MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if len(q) > MAX_QUERY:
        raise ValueError(f"name filter is over {MAX_QUERY} characters")
    needle = q.lower()
    keys = [(name_of(r), vid) for vid, r in statuses.items()
            if (status == "all" or r.get("status") == status) and needle in name_of(r).lower()]
    end = offset + limit
    first = heapq.nsmallest(end, keys) if end < len(keys) else sorted(keys)
    return len(keys), [(vid, statuses[vid]) for _, vid in first[offset:end]]
