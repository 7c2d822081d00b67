"""Retrying calls to Milvus through an outage: which errors are worth another try, and when.

A Milvus server that restarts (a deploy, an OOM kill, a node move) is gone for seconds to a
minute. A backfill that gives up on the first refused connection loses hours of decoding, so
store calls go through :func:`retry_call`: transient errors are retried with capped exponential
backoff (``cfg.retry``: ``attempts`` tries, ``backoff`` seconds before the second, doubling,
never more than ``max_backoff``), everything else is raised at once, since a bad filter or a
dim mismatch will not get better by waiting.

Retrying a write is only safe because writes are idempotent (``VectorStore`` upserts rows
under deterministic primary keys): an insert whose reply was lost may have been applied, and
its retry must overwrite it rather than add a second copy.

This module is pure (no I/O except the injected ``sleep``), so the schedule is unit-tested with
a fake clock.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc
from pymilvus import MilvusException

LOG = logging.getLogger("astradup.store")

T = TypeVar("T")

# gRPC status codes that describe the transport or a busy server, not the request.
# DEADLINE_EXCEEDED is included: with idempotent writes a retry after a lost reply is harmless.
_TRANSIENT_GRPC = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                             grpc.StatusCode.ABORTED})
# MilvusException.code values meaning "not now": pymilvus's CONNECT_FAILED (2, raised when the
# channel cannot reach the server) shares its number with the server's ErrServiceUnavailable;
# 1 on a server is ErrServiceNotReady, but pymilvus also uses 1 for every unexpected client-side
# error, so 1 counts only with a not-ready message (below). 8 = rate limited, 11 = time tick lag.
_TRANSIENT_CODES = frozenset({2, 8, 11})
# Legacy ``error_code`` values (common.ErrorCode) with the same meaning: ConnectFailed,
# NotReadyServe, NotReadyCoordActivating, RateLimit.
_TRANSIENT_LEGACY = frozenset({"ConnectFailed", "NotReadyServe", "NotReadyCoordActivating", "RateLimit"})
# What a server says while it (or one of its nodes) is coming back after a restart.
_TRANSIENT_TEXT = ("service unavailable", "service not ready", "server unavailable", "fail connecting",
                   "connection refused", "connection reset", "closed channel", "no channel in handler",
                   "node not healthy", "channel not available", "no available shard", "shard delegator",
                   "stopping state", "is stopping")
_DEAD_CHANNEL_TEXT = ("closed channel", "no channel in handler")


class _RetrySettings(Protocol):
    attempts: int
    backoff: float
    max_backoff: float


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff: ``attempts`` tries in all; the wait before try ``n + 1`` is
    ``backoff * 2 ** (n - 1)``, never more than ``max_backoff``.

    Defaults equal ``RetryConfig``'s (8 tries, 0.5 s doubling to at most 30 s: about 62 s of
    waiting in all), enough for a standalone server to restart on a small machine.
    """

    attempts: int = 8
    backoff: float = 0.5
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"retry attempts must be >= 1, got {self.attempts}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError(f"retry backoff must be >= 0, got {self.backoff} / {self.max_backoff}")

    @classmethod
    def from_config(cls, cfg: _RetrySettings) -> "RetryPolicy":
        """From ``Config.retry`` (or anything with attempts / backoff / max_backoff)."""
        return cls(int(cfg.attempts), float(cfg.backoff), float(cfg.max_backoff))

    def delays(self) -> Iterator[float]:
        """The waits between tries: ``attempts - 1`` values."""
        for n in range(self.attempts - 1):
            yield min(self.backoff * (2.0 ** n), self.max_backoff)

    @property
    def total_wait(self) -> float:
        """Seconds spent waiting before the last try gives up: how long an outage may last."""
        return sum(self.delays())


NO_RETRY = RetryPolicy(attempts=1)


def _message(exc: BaseException) -> str:
    msg = exc.message if isinstance(exc, MilvusException) else str(exc)
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "details"):
        try:
            msg = f"{msg} {exc.details()}"
        except Exception:  # a bare RpcError has no details to give
            pass
    return str(msg or "").lower()


def is_transient(exc: BaseException) -> bool:
    """True when the same call may succeed later: the server is unreachable, restarting or busy.

    A request the server rejected for what it is (bad argument, missing collection, schema
    mismatch) is not transient, whatever its transport.
    """
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        try:
            return exc.code() in _TRANSIENT_GRPC
        except Exception:
            return False
    if isinstance(exc, MilvusException):
        if exc.code in _TRANSIENT_CODES or getattr(exc, "retriable", False):
            return True
        legacy = exc.compatible_code
        name = getattr(legacy, "name", None) or _legacy_name(legacy)
        if name in _TRANSIENT_LEGACY:
            return True
        return any(t in _message(exc) for t in _TRANSIENT_TEXT)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    # grpc raises a plain ValueError for a call on a channel that was closed under it.
    return isinstance(exc, ValueError) and any(t in _message(exc) for t in _DEAD_CHANNEL_TEXT)


def _legacy_name(code: Any) -> str | None:
    try:
        from pymilvus.grpc_gen import common_pb2

        return common_pb2.ErrorCode.Name(int(code))
    except Exception:
        return None


def is_connection_error(exc: BaseException) -> bool:
    """True when the error is about reaching the server at all, so a fresh channel may be needed
    (as opposed to a server that answered "not ready")."""
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        try:
            return exc.code() == grpc.StatusCode.UNAVAILABLE
        except Exception:
            return False
    if isinstance(exc, ConnectionError):
        return True
    msg = _message(exc)
    return any(t in msg for t in ("fail connecting", "connection refused", "connection reset",
                                  *_DEAD_CHANNEL_TEXT))


def is_not_loaded(exc: BaseException) -> bool:
    """True for "collection not loaded" (code 101): what a restarted server answers until it has
    loaded its collections again. Not transient in general (a released collection stays released);
    a caller that knows its collections should be loaded loads them and retries."""
    return isinstance(exc, MilvusException) and (exc.code == 101 or "not loaded" in _message(exc))


def is_dead_channel(exc: BaseException) -> bool:
    """True when the client's channel itself was closed: only a new client can carry on."""
    return any(t in _message(exc) for t in _DEAD_CHANNEL_TEXT)


def retry_call(fn: Callable[[], T], policy: RetryPolicy, what: str, *,
               before_retry: Callable[[BaseException, int], None] | None = None,
               retry_if: Callable[[BaseException], bool] | None = None,
               sleep: Callable[[float], None] = time.sleep,
               logger: logging.Logger = LOG) -> T:
    """``fn()``, tried again after each transient error until ``policy.attempts`` tries are spent.

    Each retry is logged (WARNING, logger ``astradup.store``) with what failed, why, and the
    wait; the last error is raised unchanged, so callers see the real cause. ``retry_if(exc)``
    adds errors the caller knows how to repair; ``before_retry(exc, attempt)`` runs after the wait
    and before the next try (the store reconnects or reloads there); an error it raises counts as
    that try's failure.
    """
    delays = policy.delays()
    attempt = 1
    last: BaseException | None = None
    while True:
        try:
            if last is not None and before_retry is not None:
                before_retry(last, attempt)
            return fn()
        except Exception as exc:  # classified below; anything not transient goes straight out
            if not (is_transient(exc) or (retry_if is not None and retry_if(exc))):
                raise
            wait = next(delays, None)
            if wait is None:
                logger.error("milvus %s failed after %d tries, giving up: %s: %s",
                             what, attempt, type(exc).__name__, _short(exc))
                raise
            logger.warning("milvus %s failed (try %d of %d): %s: %s; retrying in %.2f s",
                           what, attempt, policy.attempts, type(exc).__name__, _short(exc), wait)
            last = exc
            sleep(wait)
            attempt += 1


def _short(exc: BaseException, limit: int = 300) -> str:
    text = exc.message if isinstance(exc, MilvusException) else str(exc)
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


__all__ = ["LOG", "NO_RETRY", "RetryPolicy", "is_connection_error", "is_dead_channel", "is_not_loaded",
           "is_transient", "retry_call"]
