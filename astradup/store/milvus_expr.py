"""Milvus filter expressions and row keys: every id a filter names is quoted here, in one place.

Video ids come from hashes we compute, but a filter is a small language: an id with a quote or a
backslash (a hostile or corrupt record) must stay a literal, never become syntax.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable

VIDEO_ID_MAX = 64  # VARCHAR length of video_id
PK_MAX = VIDEO_ID_MAX + 11  # VARCHAR length of the "<video_id>/<row>" primary key

Exclude = str | Collection[str] | None  # one video id, or several, whose rows a search leaves out


def quote(value: str) -> str:
    """A Milvus filter string literal (backslash and double quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def pk(video_id: str, row: int) -> str:
    """The primary key of a video's ``row``-th frame, code or window: the same on every writer."""
    return f"{video_id}/{row}"


def check_id(video_id: str) -> None:
    if not video_id or len(video_id) > VIDEO_ID_MAX:
        raise ValueError(f"video_id must be 1..{VIDEO_ID_MAX} characters, got {video_id!r}")


def id_filter(ids: Iterable[str]) -> str:
    """The rows of these videos."""
    return f"video_id in [{', '.join(quote(v) for v in ids)}]"


def video_filter(video_id: str) -> str:
    """The rows of one video."""
    return f"video_id == {quote(video_id)}"


def exclude_filter(exclude: Exclude) -> str:
    """The search filter that leaves out one video's rows or several videos' rows."""
    if not exclude:
        return ""
    if isinstance(exclude, str):
        return f"video_id != {quote(exclude)}"
    return f"video_id not in [{', '.join(quote(v) for v in sorted(exclude))}]"


def stale_filter(counts: Iterable[tuple[str, int]]) -> str:
    """Each video's rows at or past its new row count (left by a longer earlier version)."""
    return " or ".join(f"(video_id == {quote(v)} and row >= {n})" for v, n in counts)


__all__ = ["Exclude", "PK_MAX", "VIDEO_ID_MAX", "check_id", "exclude_filter", "id_filter", "pk", "quote",
           "stale_filter", "video_filter"]
