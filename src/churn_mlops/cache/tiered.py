"""The prediction cache: L1 in the worker, L2 in Redis, then the model, each answer computed once.

Keys are the encoded rows' float32 bytes (`keys.py`); the versioned Redis key is derived only
when Redis is read or written. Lookup order is L1, L2, model. The L1 lookup is synchronous
(`lookup`, the LRU's own `get`), so a hit costs no coroutine, future or task: the service answers
it before any await. In-process CPU per `predict_one` call at 32 concurrent callers, the
micro-batcher on, the cache-off pipeline of the same run as reference: a hit 1.26x to 1.38x
cheaper than scoring, a miss about 2.5 to 3 us dearer (`python -m benchmarks cache-cpu
--model-dir <artifact> --rounds 7 --concurrency 32`, then the harness as it was then;
docs/performance.md, "Prediction cache").

On an L1 miss, `resolve` joins the key's lookup in flight if there is one (`single_flight.py`);
otherwise it reads L2 where the read pays for its wait (`read_policy.py`), and computes what is
still missing. A miss that does not read L2 starts its computation in the caller's turn: no task
of the cache and no extra event-loop turn stand between the request and the micro-batcher.
Misses that read L2 are coalesced: those of one event-loop turn share one round trip (MGET),
then their computations start together, so the micro-batcher still sees them in one turn. An L2
hit is promoted to L1. A computed answer is stored in one place (`_store_computed`): in L1 at
once, and through the write buffer (`write_behind.py`) in L2, so no response waits for a Redis
write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from churn_mlops.cache.codec import ValueCodec
from churn_mlops.cache.keys import PredictionKeys
from churn_mlops.cache.l2_reads import L2Reader
from churn_mlops.cache.memory import LruTtlCache
from churn_mlops.cache.read_policy import L2ReadPolicy, ReadPolicyName
from churn_mlops.cache.redis_store import RedisStore
from churn_mlops.cache.single_flight import ComputeOne, Flight, SingleFlight
from churn_mlops.cache.stats import CacheCounters, CacheStats, ClearResult, cache_stats
from churn_mlops.cache.write_behind import L2WriteBuffer

logger = logging.getLogger("churn_mlops.cache")

Lookup = tuple[float, bool]
"""A probability, and whether it came from a cache (L1 or L2) rather than the model."""
ComputeMissing = Callable[[list[int]], Awaitable[Sequence[float]]]


class PredictionCache:
    """One worker's view of the cached predictions of one model version.

    Arguments (defaults in brackets):

    - `model_version`: the served model's version; part of every Redis key and authenticated
      in every value, so a new model never serves the old one's answers. (L1 belongs to this
      object, hence to this version.)
    - `key_prefix` ["churn:pred"]: namespace of the keys in a shared Redis.
    - `l1_size` [100,000]: entries kept in this worker's memory (0 turns L1 off).
    - `l1_ttl_seconds` [300]: how long an entry stays in L1; it also bounds how long other
      workers keep serving an entry after `clear()` ran in one of them.
    - `l2_url` [None]: Redis URL; None turns L2 off.
    - `secret` [None]: the key of the HMAC that authenticates every L2 value (`codec.py`);
      required with L2. Every worker and instance sharing the Redis must use the same one.
    - `l2_ttl_seconds` [3600]: how long an entry stays in Redis.
    - `l2_read_timeout` [0.005 s], `l2_write_timeout` [0.02 s]: budget of one Redis read or
      write command (see `RedisStore`); a slow or hanging Redis costs a lookup at most this.
    - `l2_keys_per_command` [256], `l2_max_connections` [32]: see `RedisStore`.
    - `l2_read_policy` ["adaptive"]: read L2 on an L1 miss only where it pays, or "always"
      (see `L2ReadPolicy`).
    - `l2_write_delay` [0.005 s]: computed answers are gathered this long (or until
      `l2_keys_per_command` are waiting) and written in one command (see `L2WriteBuffer`).
    - `breaker_failure_threshold` [5], `breaker_cooldown_seconds` [5]: Redis is left alone after
      this many consecutive failures, and probed again after the cool-down.
    - `max_pending_writes` [10,000]: answers waiting to be written to Redis; beyond it new
      ones are dropped and counted, so a slow Redis cannot make memory grow.
    - `clock`: monotonic seconds, for L1 expiry, the breaker and the read policy's timings
      (tests pass a fake one).
    - `store`: an L2 to use instead of building one from `l2_url` (closed with the cache).
    """

    def __init__(
        self,
        model_version: str,
        *,
        key_prefix: str = "churn:pred",
        l1_size: int = 100_000,
        l1_ttl_seconds: float = 300.0,
        l2_url: str | None = None,
        l2_ttl_seconds: float = 3600.0,
        l2_read_timeout: float = 0.005,
        l2_write_timeout: float = 0.02,
        l2_keys_per_command: int = 256,
        l2_max_connections: int = 32,
        l2_read_policy: ReadPolicyName = "adaptive",
        l2_write_delay: float = 0.005,
        breaker_failure_threshold: int = 5,
        breaker_cooldown_seconds: float = 5.0,
        max_pending_writes: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        store: RedisStore | None = None,
        secret: bytes | None = None,
    ) -> None:
        if (store is not None or l2_url is not None) and not secret:
            raise ValueError("an L2 cache needs the secret that authenticates its values")
        if not l2_ttl_seconds > 0:
            raise ValueError("l2_ttl_seconds must be > 0")
        if max_pending_writes < 0:
            raise ValueError("max_pending_writes must be >= 0")
        if l2_write_delay < 0:
            raise ValueError("l2_write_delay must be >= 0")
        self.keys = PredictionKeys(key_prefix, model_version)
        self.model_version = model_version
        self.l2_ttl_seconds = l2_ttl_seconds
        self._clock = clock
        self._l1: LruTtlCache[bytes, float] = LruTtlCache(l1_size, l1_ttl_seconds, clock=clock)
        if store is None and l2_url is not None:
            store = RedisStore(
                l2_url,
                read_timeout=l2_read_timeout,
                write_timeout=l2_write_timeout,
                keys_per_command=l2_keys_per_command,
                max_connections=l2_max_connections,
                failure_threshold=breaker_failure_threshold,
                cooldown_seconds=breaker_cooldown_seconds,
                clock=clock,
            )
        self._store = store
        self.read_policy = L2ReadPolicy(l2_read_policy)
        self.counters = CacheCounters()
        self._flights = SingleFlight(self._store_computed)
        self._reads: L2Reader | None = None
        self._writes: L2WriteBuffer | None = None
        if store is not None and secret:
            codec = ValueCodec(model_version, secret)
            self._reads = L2Reader(
                store,
                self.keys,
                codec,
                self._l1,
                self.read_policy,
                self.counters,
                self._flights,
                clock,
            )
            self._writes = L2WriteBuffer(
                store,
                self.keys,
                codec,
                ttl_seconds=l2_ttl_seconds,
                delay=l2_write_delay,
                batch_size=l2_keys_per_command,
                max_pending=max_pending_writes,
            )
        self.lookup: Callable[[bytes], float | None] = self._l1.get
        """The probability of a key in L1 (counted as a hit or a miss), or None; synchronous, so
        a hit is answered without any await. After a None, `resolve` finds the answer. (L1's
        own method, not a wrapper: one Python call less on every request.)"""

    @property
    def l2_enabled(self) -> bool:
        return self._store is not None

    async def resolve(self, key: bytes, compute: ComputeOne) -> Lookup:
        """The answer for `key` after `lookup(key)` returned None, and whether a cache had it:
        joins the lookup of `key` in flight, or reads L2 (where it pays) and computes what is
        still missing with `compute()`.

        Concurrent calls for the same key share one L2 read and at most one `compute()`; the
        exception of a failed `compute()` is raised in every one of them (one raised by the
        call `compute()` itself, before it returns an awaitable, only in the caller).
        """
        flights = self._flights
        flight = flights.get(key)
        if flight is not None:
            self.counters.joined += 1
            return await asyncio.shield(flight.joined()), flight.cached
        reads = self._reads
        if reads is not None and not flights.closed and self.read_policy.should_read():
            flight = flights.open(key, compute)
            reads.queue(key, compute, flight)
            return await flight.work, flight.cached
        flight = flights.start(key, compute, self._clock() if reads is not None else None)
        try:
            result = await flight.work
        except BaseException:
            flights.abandon(key, flight)
            raise
        value = self._store_computed(key, result, flight.started)
        # `flights.settle` written out (`work` is done here): 0.1 us of the 1.3 us `resolve`
        # cost a miss, timed over 100,000 misses on completed futures in a uvloop loop.
        by_key = flights.by_key
        if by_key.get(key) is flight:
            del by_key[key]
        shared = flight.shared
        if shared is not None and not shared.done():
            shared.set_result(value)
        return value, False

    async def get_or_compute_many(
        self, keys: Sequence[bytes], compute_missing: ComputeMissing
    ) -> tuple[list[float], list[bool]]:
        """Probabilities of `keys` in order, and for each whether a cache had it.

        Hits are served; keys already in flight (from any caller) are waited for; the remaining
        ones, deduplicated, are looked up in L2 in one round trip (where reads pay) and the rest
        computed by ONE call `compute_missing(indices)`, where `indices` are positions in `keys`
        (one per distinct missing key), which must return one probability per index, in order.
        If it raises, so does this call (and every caller waiting for one of those keys).
        """
        values = [0.0] * len(keys)
        cached = [True] * len(keys)
        waiting: dict[bytes, list[int]] = {}
        lookup = self.lookup
        for index, key in enumerate(keys):
            value = lookup(key)
            if value is not None:
                values[index] = value
            elif key in waiting:
                waiting[key].append(index)
            else:
                waiting[key] = [index]
        if not waiting:
            return values, cached

        flights, counters = self._flights, self.counters
        waited: list[tuple[Flight, asyncio.Future[float]]] = []
        owned: list[tuple[bytes, Flight]] = []
        owned_indices: list[int] = []
        for key, indices in waiting.items():
            flight = flights.get(key)
            if flight is None:
                flight = flights.open(key, None)
                owned.append((key, flight))
                owned_indices.append(indices[0])
                counters.joined += len(indices) - 1
                waited.append((flight, flight.work))
            else:
                counters.joined += len(indices)
                waited.append((flight, flight.joined()))
        if owned:

            async def compute_owned(positions: list[int]) -> Sequence[float]:
                return await compute_missing([owned_indices[position] for position in positions])

            task = asyncio.get_running_loop().create_task(self._settle_batch(owned, compute_owned))
            flights.track(task)
            await asyncio.shield(task)

        for (flight, future), indices in zip(waited, waiting.values(), strict=True):
            if not future.done():
                await asyncio.shield(future)
            value, hit = future.result(), flight.cached
            for index in indices:
                values[index] = value
                cached[index] = hit
        return values, cached

    async def wait_for_writes(self) -> None:
        """Send the buffered L2 writes now and wait until every write has ended."""
        if self._writes is not None:
            await self._writes.wait()

    async def clear(self) -> ClearResult:
        """Forget this model version's answers: this worker's L1 and every L2 key of the version.
        Other workers' L1 entries expire within `l1_ttl_seconds`."""
        if self._writes is not None:
            await self._writes.discard()
        l1_removed = self._l1.clear()
        l2_removed = None
        if self._store is not None:
            l2_removed = await self._store.delete_matching(self.keys.match_pattern)
        logger.info(
            "cache cleared for model %s: %d L1 entries, %s L2 keys",
            self.model_version,
            l1_removed,
            "unknown" if l2_removed is None else l2_removed,
        )
        return ClearResult(l1_removed=l1_removed, l2_removed=l2_removed)

    def stats(self) -> CacheStats:
        return cache_stats(
            self.model_version,
            self.counters,
            self._l1,
            self.read_policy,
            self.l2_ttl_seconds,
            self._store.stats() if self._store is not None else None,
            self._writes,
        )

    async def close(self, grace_seconds: float = 1.0) -> None:
        """Start what is queued, give lookups, computations and L2 writes in flight
        `grace_seconds`, cancel the rest and close the Redis connections. Later answers go to
        L1 only."""
        flights = self._flights
        if flights.closed:
            return
        if self._reads is not None:
            self._reads.start_queued()
        flights.closed = True
        running = set(flights.running)
        if self._writes is not None:
            self._writes.close()
            running |= self._writes.running
        if running:
            _, late = await asyncio.wait(running, timeout=grace_seconds)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        if self._store is not None:
            await self._store.close()

    def _store_computed(self, key: bytes, result: float, started: float | None) -> float:
        """Keep a computed answer (L1 now, L2 through the write buffer) and count it; the one
        place every computed answer goes through, whoever computed it."""
        value = float(result)
        counters = self.counters
        counters.computed += 1
        if 0.0 <= value <= 1.0:  # `codec.is_cacheable`, without a call on every miss
            self._l1.set(key, value)
            if self._writes is not None:
                self._writes.add(key, value)
        else:
            counters.uncacheable += 1
        if started is not None:
            self.read_policy.record_compute(self._clock() - started)
        return value

    async def _settle_batch(
        self, owned: list[tuple[bytes, Flight]], compute: ComputeMissing
    ) -> None:
        """Settle every flight of a batch from L2 (where reads pay) or one `compute` call.
        Never raises but for its own cancellation: errors go to the flights."""
        flights = self._flights
        try:
            missing = list(range(len(owned)))
            if self._reads is not None:
                if self.read_policy.should_read():
                    found = await self._reads.read([key for key, _ in owned])
                    missing = [position for position, value in enumerate(found) if value is None]
                    for (key, flight), value in zip(owned, found, strict=True):
                        if value is not None:
                            flights.settle(key, flight, value, cached=True)
                    if not missing:
                        return
                else:
                    self.read_policy.skipped += len(owned) - 1  # one decision, every key skipped
            results = await compute(missing)
            if len(results) != len(missing):
                raise ValueError(
                    f"the computation returned {len(results)} results for {len(missing)} rows"
                )
            for position, result in zip(missing, results, strict=True):
                key, flight = owned[position]
                flights.land(key, flight, result)
        except BaseException as error:
            for key, flight in owned:
                flights.fail(key, flight, error)
            if not isinstance(error, Exception):
                raise
