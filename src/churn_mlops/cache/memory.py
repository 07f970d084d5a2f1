"""L1: a bounded in-process LRU cache whose entries expire, one per worker."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruTtlCache(Generic[K, V]):
    """At most `capacity` entries, each valid for `ttl_seconds` after it was set.

    `get` and `set` are O(1): an OrderedDict keeps entries in use order (`move_to_end` on a hit,
    `popitem(last=False)` evicts the least recently used). Expiry is checked lazily on `get`
    against `clock` (monotonic seconds; injectable so tests need not sleep); an expired entry
    that is never read again is evicted like any other cold entry. `capacity` 0 stores nothing.
    Not thread-safe: one instance belongs to one event loop.
    """

    __slots__ = ("_clock", "_data", "capacity", "evictions", "expired", "hits", "misses", "ttl")

    def __init__(
        self,
        capacity: int,
        ttl_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        if not ttl_seconds > 0:
            raise ValueError("ttl_seconds must be > 0")
        self.capacity = capacity
        self.ttl = ttl_seconds
        self._clock = clock
        self._data: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.expired = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        """The live value of `key`, marked most recently used; None if absent or expired."""
        entry = self._data.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry[1] <= self._clock():
            del self._data[key]
            self.expired += 1
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return entry[0]

    def set(self, key: K, value: V) -> None:
        """Store `value` for `ttl_seconds`, evicting the least recently used entry when full."""
        if self.capacity == 0:
            return
        data = self._data
        if key in data:
            data.move_to_end(key)
        data[key] = (value, self._clock() + self.ttl)
        if len(data) > self.capacity:
            data.popitem(last=False)
            self.evictions += 1

    def clear(self) -> int:
        """Drop every entry; returns how many there were."""
        count = len(self._data)
        self._data.clear()
        return count
