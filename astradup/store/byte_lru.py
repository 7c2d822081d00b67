"""A least-recently-used map capped by the bytes its values hold, for the shard store's caches
(decoded records, Parquet footers): one eviction rule, one lock."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ByteLRU(Generic[K, V]):
    """Values by key, each put with its cost in bytes; the least recently used go first once the
    costs pass ``cap``. A value costing more than the whole cap is not kept: it would only evict
    everything else. Thread-safe."""

    def __init__(self, cap: int) -> None:
        self.cap = max(0, int(cap))
        self.nbytes = 0
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[K]:
        with self._lock:
            return list(self._items)

    def get(self, key: K) -> V | None:
        with self._lock:
            got = self._items.get(key)
            if got is None:
                return None
            self._items.move_to_end(key)
            return got[0]

    def put(self, key: K, value: V, cost: int) -> None:
        if cost > self.cap:
            return
        with self._lock:
            self._pop(key)
            self._items[key] = (value, cost)
            self.nbytes += cost
            while self.nbytes > self.cap:
                _, (_, n) = self._items.popitem(last=False)
                self.nbytes -= n

    def pop(self, key: K) -> None:
        with self._lock:
            self._pop(key)

    def _pop(self, key: K) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.nbytes -= old[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0


__all__ = ["ByteLRU"]
