"""L2 reads: the answers Redis holds for L1 misses, one round trip per event-loop turn.

A read makes the request that waits for it pay a Redis round trip: the read policy measured
0.9 ms a read against 0.13 ms a computed miss, batcher wait included, in the in-process A/B
with the local Redis (`python -m benchmarks cache-cpu --redis-url redis://127.0.0.1:6379/0`,
then the harness as it was then; docs/performance.md, "Prediction cache"). So the cache
reads only where `read_policy.py` says it pays, and never more than once per key and turn:

- the single-key misses of one event-loop turn are queued and share one MGET; those still
  missing are then computed together, so the micro-batcher still sees them in one turn;
- a batch's missing keys are read in one MGET by the batch itself (`read`).

Every value is authenticated (`codec.py`): one this service did not write for its key and model
version (planted, another secret, another key or version, damaged) or that holds no probability
is a counted miss (`corrupt`, exported as `churn_cache_rejected_total`), never an answer. A hit
is promoted to L1. A Redis that fails, hangs, answers out of protocol or is behind an open
breaker is a miss for every key (`unavailable`), within the read timeout: `RedisStore.get_many`
answers a list of one bytes value or None per key, or None.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from churn_mlops.cache.codec import ValueCodec
from churn_mlops.cache.keys import PredictionKeys
from churn_mlops.cache.memory import LruTtlCache
from churn_mlops.cache.read_policy import L2ReadPolicy
from churn_mlops.cache.redis_store import RedisStore
from churn_mlops.cache.single_flight import ComputeOne, Flight, SingleFlight
from churn_mlops.cache.stats import CacheCounters

_Queued = tuple[bytes, ComputeOne, Flight]


class L2Reader:
    """Looks L1 misses up in Redis, counts what it finds and times it for the read policy."""

    def __init__(
        self,
        store: RedisStore,
        keys: PredictionKeys,
        codec: ValueCodec,
        l1: LruTtlCache[bytes, float],
        policy: L2ReadPolicy,
        counters: CacheCounters,
        flights: SingleFlight,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._keys = keys
        self._codec = codec
        self._l1 = l1
        self._policy = policy
        self._counters = counters
        self._flights = flights
        self._clock = clock
        self._queued: list[_Queued] = []
        self._handle: asyncio.Handle | None = None

    def queue(self, key: bytes, compute: ComputeOne, flight: Flight) -> None:
        """Settle `flight` from the MGET of this turn's misses, or else from `compute()`."""
        self._queued.append((key, compute, flight))
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self._start_queued)

    def start_queued(self) -> None:
        """Start the read of what is queued now rather than at the end of the turn."""
        if self._handle is not None:
            self._handle.cancel()
            self._start_queued()

    async def read(self, keys: list[bytes]) -> list[float | None]:
        """The answers to `keys` in Redis, None where absent, invalid or unreadable."""
        counters = self._counters
        redis_key = self._keys.redis_key
        names = [redis_key(key) for key in keys]
        started = self._clock()
        raw = await self._store.get_many(names)
        if raw is None:
            counters.l2_unavailable += len(keys)
            counters.l2_misses += len(keys)
            return [None] * len(keys)
        elapsed = self._clock() - started
        decode, promote = self._codec.decode, self._l1.set
        found: list[float | None] = []
        for key, name, item in zip(keys, names, raw, strict=True):
            value = None if item is None else decode(item, name)
            if value is not None:
                promote(key, value)
            elif item is not None:
                counters.l2_corrupt += 1
            found.append(value)
        hits = len(keys) - found.count(None)
        counters.l2_hits += hits
        counters.l2_misses += len(keys) - hits
        self._policy.record_read(len(keys), hits, elapsed)
        return found

    def _start_queued(self) -> None:
        self._handle = None
        queued, self._queued = self._queued, []
        if queued:
            task = asyncio.get_running_loop().create_task(self._read_then_compute(queued))
            self._flights.track(task)

    async def _read_then_compute(self, queued: list[_Queued]) -> None:
        flights = self._flights
        try:
            found = await self.read([key for key, _, _ in queued])
        except BaseException as error:  # cancelled by close(): nothing else raises here
            for key, _, flight in queued:
                flights.fail(key, flight, error)
            if not isinstance(error, Exception):
                raise
            return
        for (key, compute, flight), value in zip(queued, found, strict=True):
            if value is not None:
                flights.settle(key, flight, value, cached=True)
                continue
            try:
                work = asyncio.ensure_future(compute())
            except Exception as error:
                flights.fail(key, flight, error)
                continue
            flight.started = self._clock()
            flights.follow(key, flight, work)
