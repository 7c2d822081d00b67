"""A per-replica bound on concurrent media decodes, answered 503 + Retry-After when full.

Decoding a query (an upload or an s3:// object) is the one request that can take a CPU and
hundreds of MB for many seconds; a burst of them used to fill every request slot of the search
replica, so a search by ``video_id`` waited 21 s and ``/healthz``'s ping timed out. Waiting for
a slot would only move that queue, so a decode that finds every slot taken is refused at once,
with a time to come back; everything that does not decode never touches the slots.
"""
from __future__ import annotations

import functools
import threading
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., dict])


class DecodeSlots:
    """``size`` slots taken without waiting: :meth:`try_take` is False when all are in use."""

    def __init__(self, size: int, retry_after_s: int = 5) -> None:
        if size < 1:
            raise ValueError("decode slots must be >= 1")
        self.size = size
        self.retry_after_s = retry_after_s
        self._free = threading.BoundedSemaphore(size)

    def try_take(self) -> bool:
        return self._free.acquire(blocking=False)

    def give_back(self) -> None:
        self._free.release()

    def busy(self) -> dict:
        """The service's error dict for a full replica (the gateway turns it into 503 + Retry-After)."""
        return {"error": f"busy: {self.size} media decode(s) already running on this search replica; "
                         f"retry in {self.retry_after_s} s (searches by video_id are not affected)",
                "status": 503, "retry_after": self.retry_after_s}


def decode_slot(method: F) -> F:
    """Run a SearchService method that decodes media only while it holds one of ``self.decodes``.

    Stays a plain (sync) function so Serve still runs it in its thread pool, off the replica's
    event loop.
    """
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> dict:
        slots: DecodeSlots = self.decodes
        if not slots.try_take():
            return slots.busy()
        try:
            return method(self, *args, **kwargs)
        finally:
            slots.give_back()

    return wrapper  # type: ignore[return-value]
