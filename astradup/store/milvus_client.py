"""A Milvus client that outlives outages: Lite or server set-up, every call retried, dead channels replaced.

One ``MilvusConnection`` talks to Milvus Lite (a local ``*.db`` path) or a Milvus server
(``http(s)://host:19530``) through the same ``pymilvus.MilvusClient`` calls, so moving from a
laptop to a cluster is a config change.

Milvus Lite allows one process per database: it takes a lock on the ``.db`` directory, and a
second process fails to open it (reported as ConfigError). Within a process, connections to the
same path share one embedded server; the last ``close()`` stops it, so reopening the path reads
the collections back from disk like a fresh process would.

Outages. Every call goes through :mod:`astradup.store.retry` (``cfg.retry``): transient errors
(server unreachable, restarting, busy) are retried with capped exponential backoff and logged on
the ``astradup.store`` logger; a server client whose channel was closed under it is replaced by a
new one, and a collection a restarted server has not loaded yet is loaded.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from pymilvus import MilvusClient, MilvusException

from astradup.errors import ConfigError
from astradup.store.retry import RetryPolicy, is_connection_error, is_dead_channel, is_not_loaded, retry_call
from astradup.uris import is_lite_uri

LOG = logging.getLogger("astradup.store")
T = TypeVar("T")
_RECONNECT_TIMEOUT = 10.0  # seconds a replacement client waits for its channel

_lite_lock = threading.Lock()
_lite_refs: dict[str, int] = {}  # abs .db path -> open connections in this process


class _DropMvccWarning(logging.Filter):
    """Lite and 2.3 servers have no MVCC timestamp service; pymilvus warns on every iterator, harmlessly."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "mvccTs" not in record.getMessage()


class MilvusConnection:
    """The client of one Milvus (Lite path or server URI) and the retry policy its calls run under.

    ``loaded``: the collections a "not loaded" error (a restarted server) loads before the retry;
    the owner sets it to the collections it uses.
    """

    def __init__(self, uri: str, token: str = "", retry: RetryPolicy | None = None) -> None:
        self.lite = is_lite_uri(uri)
        self.retry = retry or RetryPolicy()
        self.loaded: tuple[str, ...] = ()
        self._token = token
        self._client_lock = threading.Lock()
        self._closed = False
        if self.lite:
            if not uri.endswith(".db"):
                raise ConfigError(f"Milvus Lite path must end with .db (pymilvus detects Lite by it): {uri!r}")
            uri = os.path.abspath(uri)
            os.makedirs(os.path.dirname(uri), exist_ok=True)
        _iter_log = logging.getLogger("pymilvus.client.iterator.query_iterator")
        if not any(isinstance(f, _DropMvccWarning) for f in _iter_log.filters):
            _iter_log.addFilter(_DropMvccWarning())
        self.uri = uri
        try:
            # No retry here: a wrong address must fail before a backfill decodes anything.
            self.client = self._new_client()
        except MilvusException as e:
            if self.lite:
                raise ConfigError(
                    f"cannot open Milvus Lite database {uri}: {e.message}. A Lite database belongs to "
                    "one process at a time; stop the other process (or use a Milvus server URI)") from e
            raise ConfigError(f"cannot connect to Milvus at {uri}: {e.message}") from e
        if self.lite:
            with _lite_lock:
                _lite_refs[uri] = _lite_refs.get(uri, 0) + 1

    def _new_client(self) -> MilvusClient:
        """A client of its own on a server (``dedicated``: pymilvus otherwise shares one channel per
        address in the process, and replacing a dead one would hand back the same channel)."""
        if self.lite:
            return MilvusClient(uri=self.uri, token=self._token)
        return MilvusClient(uri=self.uri, token=self._token, dedicated=True, timeout=_RECONNECT_TIMEOUT)

    def call(self, what: str, fn: Callable[[MilvusClient], T],
             retry_if: Callable[[BaseException], bool] | None = None) -> T:
        """``fn(client)`` under the retry policy; a retry uses the current client (it may be a new one).
        ``retry_if`` adds errors this call may retry beyond the transient ones and "not loaded"."""
        used: list[MilvusClient] = []

        def attempt() -> T:
            client = self.client
            used.append(client)
            return fn(client)

        def before_retry(exc: BaseException, attempt_no: int) -> None:
            # pymilvus repairs an unreachable channel in place on the next call; a channel closed
            # under the client (or still failing to connect after two tries) gets a new client.
            if not self.lite and (is_dead_channel(exc) or (is_connection_error(exc) and attempt_no >= 3)):
                self._reconnect(used[-1])
            elif is_not_loaded(exc):
                # A restarted server reloads its collections by itself, a while after it answers;
                # asking for the load (idempotent) waits for it instead of failing the call.
                for name in self.loaded:
                    self.client.load_collection(name)

        return retry_call(attempt, self.retry, what, before_retry=before_retry,
                          retry_if=lambda e: is_not_loaded(e) or (retry_if is not None and retry_if(e)))

    def _reconnect(self, stale: MilvusClient) -> None:
        """Replace ``stale`` with a new client, unless another thread already did; a failure to
        connect is logged and left to the next retry."""
        with self._client_lock:
            if self.client is not stale or self._closed:
                return
            try:
                fresh = self._new_client()
            except Exception as e:  # still down: the retry loop waits and tries again
                LOG.warning("milvus reconnect to %s failed: %s: %s", self.uri, type(e).__name__,
                            getattr(e, "message", e))
                return
            self.client = fresh
        LOG.warning("milvus client for %s replaced by a new connection", self.uri)
        try:
            stale.close()
        except Exception:  # the old channel is already broken; nothing left to release
            pass

    def server_version(self) -> tuple[int, int]:
        """(major, minor) of the server ("v2.3.5-lite" -> (2, 3)); unknown reads as new."""
        return self.call("server version", _server_minor)

    def close(self) -> None:
        """Close the client; the last connection to a Lite path also stops its embedded server."""
        with self._client_lock:  # a reconnect in another thread must not hand out a client after this
            if self._closed:
                return
            self._closed = True
        try:
            self.client.close()
        finally:
            if self.lite:
                with _lite_lock:
                    left = _lite_refs.get(self.uri, 1) - 1
                    if left > 0:
                        _lite_refs[self.uri] = left
                    else:
                        _lite_refs.pop(self.uri, None)
                if left <= 0:
                    from milvus_lite.server_manager import server_manager_instance
                    server_manager_instance.release_server(self.uri)


def _server_minor(client: MilvusClient) -> tuple[int, int]:
    try:
        parts = str(client.get_server_version()).lstrip("v").split(".")
        return int(parts[0]), int(parts[1])
    except (MilvusException, ValueError, IndexError):
        return (99, 0)


__all__ = ["LOG", "MilvusConnection"]
