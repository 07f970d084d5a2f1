"""The prediction cache: L1 in the worker, L2 in Redis, then the model, each answer computed once.

Keys are the encoded rows' float32 bytes (`keys.py`); the versioned Redis key is derived only
when Redis is read or written. Lookup order is L1, L2, model. The L1 lookup is synchronous
(`lookup`), so a hit costs no coroutine, future or task: the service answers it before any
await. An L2 hit is promoted to L1; a computed answer goes to L1 at once and to L2 from a
background task, so no response waits for a Redis write. L2 is read on an L1 miss only where
the read pays for its wait (`read_policy.py`).

Single-flight: while a key is being looked up in L2 or computed, later lookups of the same key in
this worker wait for that one instead of starting their own (200 identical cold requests cost one
model row). A failure of that computation reaches every waiter and caches nothing. The shared
work is a future the cache owns (the micro-batcher's future, or a task wrapping `compute()`),
awaited through `asyncio.shield`, so a waiter that goes away (a client disconnect cancels its
request) cancels neither the work nor the others; a done-callback, not the waiter, stores the
answer.

A miss that does not read L2 starts its computation in the caller's turn, directly: no task of
the cache and no extra event-loop turn stand between the request and the micro-batcher.
Misses that read L2 are coalesced: those of one event-loop turn share one round trip (MGET),
then their computations start together, so the micro-batcher still sees them in one turn. The
L2 writes of a few milliseconds (`l2_write_delay`) go out as one command.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Literal

from churn_mlops.cache.breaker import BreakerState
from churn_mlops.cache.codec import ValueCodec, is_cacheable
from churn_mlops.cache.keys import PredictionKeys
from churn_mlops.cache.memory import LruTtlCache
from churn_mlops.cache.read_policy import L2ReadPolicy, ReadPolicyName
from churn_mlops.cache.redis_store import RedisStore

logger = logging.getLogger("churn_mlops.cache")

Level = Literal["l1", "l2"]
Lookup = tuple[float, bool]
"""A probability, and whether it came from a cache (L1 or L2) rather than the model."""
ComputeOne = Callable[[], Awaitable[float]]
"""Starts computing one answer; an asyncio.Future (the micro-batcher's) is used as it is, any
other awaitable is wrapped in a task of the cache."""
ComputeMissing = Callable[[list[int]], Awaitable[Sequence[float]]]
_Entry = tuple[bytes, asyncio.Future[Lookup]]


class _Flight:
    """A computation started without an L2 read: its owner awaits `work` directly (no shield:
    it costs 3 to 4 us a miss, `asyncio.shield` plus a callback, measured in a uvloop loop);
    later identical misses wait for `shared`, made when the first of them arrives."""

    __slots__ = ("compute", "shared", "started", "work")

    def __init__(self, work: asyncio.Future[float], compute: ComputeOne, started: float) -> None:
        self.work = work
        self.compute = compute
        self.started = started
        self.shared: asyncio.Future[float] | None = None

    def joined(self) -> asyncio.Future[float]:
        shared = self.shared
        if shared is None:
            shared = self.shared = asyncio.get_running_loop().create_future()
        return shared


@dataclass(frozen=True)
class L1Stats:
    hits: int
    misses: int
    size: int
    capacity: int
    ttl_seconds: float
    evictions: int
    expired: int


@dataclass(frozen=True)
class L2Stats:
    enabled: bool
    hits: int
    misses: int
    """Keys looked up and not served: absent, corrupt or Redis unavailable."""
    corrupt: int
    """Values that were not a valid answer for their key and model version (read as misses)."""
    unavailable: int
    """Keys not looked up because Redis failed, timed out or the breaker was open."""
    ttl_seconds: float
    pending_writes: int
    written: int
    failed_writes: int
    """Values that did not reach Redis (error, timeout, breaker open)."""
    dropped_writes: int
    """Values never sent because `max_pending_writes` were already waiting."""
    breaker_state: BreakerState | None
    breaker_outages: int
    breaker_failures: int
    breaker_short_circuited: int
    last_error: str | None
    calls: int
    timeouts: int
    errors: int
    saturated: int
    read_policy: ReadPolicyName
    """`adaptive`: read L2 on an L1 miss only where the read pays; `always`: on every miss."""
    reads_pay: bool
    """Whether, by the latest measurements, an L2 read saves more time than it costs."""
    skipped_reads: int
    """L1 misses computed without reading L2, because reads did not pay."""
    probe_reads: int
    """L2 reads made while reads did not pay, to measure again."""
    recent_hit_rate: float
    """Share of keys read from L2 that were there, over about the last 64."""
    read_ms: float
    """Smoothed wall time of one L2 read."""
    compute_ms: float
    """Smoothed wall time of one computed miss (batcher wait and model call)."""


@dataclass(frozen=True)
class CacheStats:
    model_version: str
    hit_rate: float
    """Lookups answered by L1 or L2, over all lookups (0 before the first)."""
    computed: int
    """Answers computed by the model through the cache."""
    joined: int
    """Lookups that waited for an identical one already in flight instead of computing."""
    uncacheable: int
    """Computed answers not stored because they were not a probability in 0..1."""
    l1: L1Stats
    l2: L2Stats

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClearResult:
    l1_removed: int
    l2_removed: int | None
    """Keys removed from Redis; None if L2 is off or Redis could not be cleared."""


class PredictionCache:
    """One worker's view of the cached predictions of one model version.

    Arguments (defaults in brackets):

    - `model_version`: the served model's version; part of every Redis key and checked in
      every value, so a new model never serves the old one's answers. (L1 belongs to this
      object, hence to this version.)
    - `key_prefix` ["churn:pred"]: namespace of the keys in a shared Redis.
    - `l1_size` [100,000]: entries kept in this worker's memory (0 turns L1 off).
    - `l1_ttl_seconds` [300]: how long an entry stays in L1; it also bounds how long other
      workers keep serving an entry after `clear()` ran in one of them.
    - `l2_url` [None]: Redis URL; None turns L2 off.
    - `l2_ttl_seconds` [3600]: how long an entry stays in Redis.
    - `l2_read_timeout` [0.005 s], `l2_write_timeout` [0.02 s]: budget of one Redis read or
      write command (see `RedisStore`); a slow or hanging Redis costs a lookup at most this.
    - `l2_keys_per_command` [256], `l2_max_connections` [32]: see `RedisStore`.
    - `l2_read_policy` ["adaptive"]: read L2 on an L1 miss only where it pays, or "always"
      (see `L2ReadPolicy`).
    - `l2_write_delay` [0.005 s]: computed answers are gathered this long (or until
      `l2_keys_per_command` are waiting) and written in one command. redis-py spends about
      100 us of the worker's CPU per command, whatever its size: one command per event-loop
      turn (about 7 keys at 32 connections) cost more CPU than the misses themselves.
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
    ) -> None:
        if not l2_ttl_seconds > 0:
            raise ValueError("l2_ttl_seconds must be > 0")
        if max_pending_writes < 0:
            raise ValueError("max_pending_writes must be >= 0")
        if l2_write_delay < 0:
            raise ValueError("l2_write_delay must be >= 0")
        self.keys = PredictionKeys(key_prefix, model_version)
        self.model_version = model_version
        self.l2_ttl_seconds = l2_ttl_seconds
        self.max_pending_writes = max_pending_writes
        self.l2_write_delay = l2_write_delay
        self._write_batch = l2_keys_per_command
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
        self._codec = ValueCodec(model_version)
        self._digest_start = len(self.keys.namespace)
        self.read_policy = L2ReadPolicy(l2_read_policy)
        self.lookup: Callable[[bytes], float | None] = self._l1.get
        """The probability of a key in L1 (counted as a hit or a miss), or None; synchronous, so
        a hit is answered without any await. After a None, `resolve` finds the answer. (L1's
        own method, not a wrapper: one Python call less on every request.)"""

        # Keys being looked up in L2 (then maybe computed): waiters get a Lookup.
        self._inflight: dict[bytes, asyncio.Future[Lookup]] = {}
        # Keys being computed without an L2 read: waiters get the bare probability.
        self._computing: dict[bytes, _Flight] = {}
        self._queued: list[tuple[bytes, ComputeOne, asyncio.Future[Lookup]]] = []
        self._queued_handle: asyncio.Handle | None = None
        self._resolving: set[asyncio.Future[Any]] = set()
        self._write_buffer: list[tuple[bytes, float]] = []
        self._write_handle: asyncio.TimerHandle | None = None
        self._writing: set[asyncio.Task[None]] = set()
        self._pending_writes = 0
        self._closed = False

        self._l2_hits = 0
        self._l2_misses = 0
        self._l2_corrupt = 0
        self._l2_unavailable = 0
        self._computed = 0
        self._joined = 0
        self._uncacheable = 0
        self._written = 0
        self._failed_writes = 0
        self._dropped_writes = 0

    @property
    def l2_enabled(self) -> bool:
        return self._store is not None

    # Lookups without computing

    async def get(self, key: bytes) -> tuple[float, Level] | None:
        """The cached probability of `key` and the level that had it, or None."""
        value = self._l1.get(key)
        if value is not None:
            return value, "l1"
        if self._store is None:
            return None
        found = (await self._l2_lookup([key]))[0]
        if found is None:
            return None
        self._l1.set(key, found)
        return found, "l2"

    async def get_many(self, keys: Sequence[bytes]) -> list[tuple[float, Level] | None]:
        """`get` for many keys, with one L2 round trip for all the L1 misses."""
        results: list[tuple[float, Level] | None] = [None] * len(keys)
        missing: list[int] = []
        for index, key in enumerate(keys):
            value = self._l1.get(key)
            if value is None:
                missing.append(index)
            else:
                results[index] = (value, "l1")
        if missing and self._store is not None:
            found = await self._l2_lookup([keys[index] for index in missing])
            for index, value in zip(missing, found, strict=True):
                if value is not None:
                    self._l1.set(keys[index], value)
                    results[index] = (value, "l2")
        return results

    # Writes

    def put(self, key: bytes, value: float) -> None:
        """Cache a computed probability: in L1 now, in L2 from a background task."""
        self.put_many([(key, value)])

    def put_many(self, items: Iterable[tuple[bytes, float]]) -> None:
        """`put` for many (key, probability) pairs; their L2 writes share one command."""
        stored: list[tuple[bytes, float]] = []
        for key, value in items:
            if is_cacheable(value):
                self._l1.set(key, value)
                stored.append((key, value))
            else:
                self._uncacheable += 1
        self._enqueue_writes(stored)

    # Lookups that compute what is missing, once

    async def get_or_compute(self, key: bytes, compute: ComputeOne) -> Lookup:
        """The probability of `key` from L1, L2 or `compute()`, and whether a cache had it.

        Concurrent calls for the same key share one L2 lookup and at most one `compute()`; the
        exception of a failed `compute()` is raised in every one of them (one raised by the
        call `compute()` itself, before it returns an awaitable, only in the caller).
        """
        value = self._l1.get(key)
        if value is not None:
            return value, True
        return await self.resolve(key, compute)

    async def resolve(self, key: bytes, compute: ComputeOne) -> Lookup:
        """`get_or_compute` after `lookup(key)` returned None: joins the lookup or computation
        of `key` in flight, or reads L2 (where it pays) and computes what is still missing."""
        flight = self._computing.get(key)
        if flight is not None:
            self._joined += 1
            return await asyncio.shield(flight.joined()), False
        future = self._inflight.get(key)
        if future is not None:
            self._joined += 1
            return await asyncio.shield(future)
        store = self._store
        if store is not None and not self._closed and self.read_policy.should_read():
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            self._inflight[key] = future
            self._queued.append((key, compute, future))
            if self._queued_handle is None:
                self._queued_handle = loop.call_soon(self._resolve_queued)
            return await asyncio.shield(future)
        # No L2 read: start the computation now, in this turn, shared with later identical misses.
        # If this caller is cancelled, so is `work` (a task cancels what it awaits): the batcher
        # drops the row, and `_finish_flight` starts it again for the waiters that remain.
        flight = self._start_flight(key, compute, self._clock() if store is not None else 0.0)
        work = flight.work
        try:
            result = await work
        except BaseException:
            if work.done():
                self._finish_flight(key, flight)
            else:  # this caller was cancelled and the work ignored it: finish when it ends
                self._resolving.add(work)
                work.add_done_callback(partial(self._finish_ownerless_flight, key, flight))
            raise
        # `_finish_flight` inlined for its common case (about 1 us a miss less, measured).
        computing = self._computing
        if computing.get(key) is flight:
            del computing[key]
        value = float(result)
        self._computed += 1
        if 0.0 <= value <= 1.0:
            self._l1.set(key, value)
            if store is not None:
                self.read_policy.record_compute(self._clock() - flight.started)
                self._enqueue_writes([(key, value)])
        else:
            self._uncacheable += 1
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
        count = len(keys)
        values = [0.0] * count
        cached = [True] * count
        waiting: dict[bytes, list[int]] = {}
        l1_get = self._l1.get
        for index, key in enumerate(keys):
            value = l1_get(key)
            if value is not None:
                values[index] = value
                continue
            indices = waiting.get(key)
            if indices is None:
                waiting[key] = [index]
            else:
                indices.append(index)
        if not waiting:
            return values, cached

        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Lookup] | asyncio.Future[float]] = []
        owned: list[_Entry] = []
        owned_indices: list[int] = []
        for key, indices in waiting.items():
            flight = self._computing.get(key)
            joined: asyncio.Future[Lookup] | asyncio.Future[float] | None = (
                flight.joined() if flight is not None else self._inflight.get(key)
            )
            if joined is None:
                future: asyncio.Future[Lookup] = loop.create_future()
                self._inflight[key] = future
                owned.append((key, future))
                owned_indices.append(indices[0])
                self._joined += len(indices) - 1
                futures.append(future)
            else:
                self._joined += len(indices)
                futures.append(joined)

        if owned:

            async def compute_owned(positions: list[int]) -> Sequence[float]:
                return await compute_missing([owned_indices[position] for position in positions])

            read_l2 = self._store is not None and self.read_policy.should_read()
            if self._store is not None and not read_l2:
                self.read_policy.skipped += len(owned) - 1  # one decision, every key skipped
            await asyncio.shield(self._spawn(self._resolve(owned, compute_owned, read_l2)))

        for waited, indices in zip(futures, waiting.values(), strict=True):
            if not waited.done():
                await asyncio.shield(waited)
            result = waited.result()
            value, hit = result if isinstance(result, tuple) else (result, False)
            for index in indices:
                values[index] = value
                cached[index] = hit
        return values, cached

    # Maintenance

    async def wait_for_writes(self) -> None:
        """Send the buffered L2 writes now and wait until every write has ended."""
        if self._write_handle is not None:
            self._write_handle.cancel()
            self._write_handle = None
        self._start_writes()
        if self._writing:
            await asyncio.wait(set(self._writing))

    async def clear(self) -> ClearResult:
        """Forget this model version's answers: this worker's L1 and every L2 key of the version.
        Other workers' L1 entries expire within `l1_ttl_seconds`."""
        if self._write_handle is not None:
            self._write_handle.cancel()
            self._write_handle = None
        self._pending_writes -= len(self._write_buffer)
        self._write_buffer = []
        if self._writing:
            await asyncio.wait(set(self._writing))
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
        l1 = self._l1
        lookups = l1.hits + l1.misses
        store = self._store.stats() if self._store is not None else None
        breaker = store.breaker if store is not None else None
        policy = self.read_policy
        return CacheStats(
            model_version=self.model_version,
            hit_rate=(l1.hits + self._l2_hits) / lookups if lookups else 0.0,
            computed=self._computed,
            joined=self._joined,
            uncacheable=self._uncacheable,
            l1=L1Stats(
                hits=l1.hits,
                misses=l1.misses,
                size=len(l1),
                capacity=l1.capacity,
                ttl_seconds=l1.ttl,
                evictions=l1.evictions,
                expired=l1.expired,
            ),
            l2=L2Stats(
                enabled=store is not None,
                hits=self._l2_hits,
                misses=self._l2_misses,
                corrupt=self._l2_corrupt,
                unavailable=self._l2_unavailable,
                ttl_seconds=self.l2_ttl_seconds,
                pending_writes=self._pending_writes,
                written=self._written,
                failed_writes=self._failed_writes,
                dropped_writes=self._dropped_writes,
                breaker_state=breaker.state if breaker is not None else None,
                breaker_outages=breaker.outages if breaker is not None else 0,
                breaker_failures=breaker.failures if breaker is not None else 0,
                breaker_short_circuited=breaker.short_circuited if breaker is not None else 0,
                last_error=breaker.last_error if breaker is not None else None,
                calls=store.calls if store is not None else 0,
                timeouts=store.timeouts if store is not None else 0,
                errors=store.errors if store is not None else 0,
                saturated=store.saturated if store is not None else 0,
                read_policy=policy.name,
                reads_pay=policy.pays,
                skipped_reads=policy.skipped,
                probe_reads=policy.probes,
                recent_hit_rate=policy.hit_rate,
                read_ms=policy.read_seconds * 1000.0,
                compute_ms=policy.compute_seconds * 1000.0,
            ),
        )

    async def close(self, grace_seconds: float = 1.0) -> None:
        """Start what is queued, give lookups, computations and L2 writes in flight
        `grace_seconds`, cancel the rest and close the Redis connections. Later writes go to
        L1 only."""
        if self._closed:
            return
        if self._queued_handle is not None:
            self._queued_handle.cancel()
            self._resolve_queued()
        if self._write_handle is not None:
            self._write_handle.cancel()
            self._write_handle = None
        self._start_writes()
        self._closed = True
        running = self._resolving | self._writing
        if running:
            _, late = await asyncio.wait(running, timeout=grace_seconds)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        if self._store is not None:
            await self._store.close()

    # Internals

    def _start_flight(self, key: bytes, compute: ComputeOne, started: float) -> _Flight:
        awaitable = compute()
        work = (
            awaitable if isinstance(awaitable, asyncio.Future) else asyncio.ensure_future(awaitable)
        )
        flight = _Flight(work, compute, started)
        self._computing[key] = flight
        return flight

    def _finish_flight(self, key: bytes, flight: _Flight) -> None:
        """Cache the result of a finished computation and hand it to the waiters that joined;
        run by its owner after its await, or as a done-callback when it has no owner."""
        work, shared = flight.work, flight.shared
        if work.cancelled():
            if shared is not None and not shared.done() and not self._closed:
                # The owner went away, others wait: the computation is theirs now.
                try:
                    restarted = self._start_flight(key, flight.compute, flight.started)
                except Exception as error:
                    shared.set_exception(error)
                    shared.exception()
                else:
                    restarted.shared = shared
                    self._resolving.add(restarted.work)
                    restarted.work.add_done_callback(
                        partial(self._finish_ownerless_flight, key, restarted)
                    )
                    return
            elif shared is not None:
                shared.cancel()
            if self._computing.get(key) is flight:
                del self._computing[key]
            return
        if self._computing.get(key) is flight:
            del self._computing[key]
        failure = work.exception()
        if failure is not None:  # every waiter gets it; nothing is cached
            if shared is not None and not shared.done():
                shared.set_exception(failure)
                shared.exception()
            return
        if self._store is not None:
            self.read_policy.record_compute(self._clock() - flight.started)
        value = self._store_computed(key, work.result())
        if shared is not None and not shared.done():
            shared.set_result(value)

    def _finish_ownerless_flight(
        self, key: bytes, flight: _Flight, work: asyncio.Future[float]
    ) -> None:
        self._resolving.discard(work)
        self._finish_flight(key, flight)

    def _store_computed(self, key: bytes, result: float) -> float:
        value = float(result)
        self._computed += 1
        if is_cacheable(value):
            self._l1.set(key, value)
            self._enqueue_writes([(key, value)])
        else:
            self._uncacheable += 1
        return value

    def _resolve_queued(self) -> None:
        self._queued_handle = None
        queued, self._queued = self._queued, []
        if queued:
            self._spawn(self._read_then_compute(queued))

    async def _read_then_compute(
        self, queued: list[tuple[bytes, ComputeOne, asyncio.Future[Lookup]]]
    ) -> None:
        """Answer queued single-key misses from one L2 read; start computing the rest."""
        try:
            found = await self._l2_lookup([key for key, _, _ in queued])
        except BaseException as error:  # cancelled by close(): nothing else raises here
            for key, _, future in queued:
                _fail(future, error)
                self._leave(key, future)
            if not isinstance(error, Exception):
                raise
            return
        for (key, compute, future), value in zip(queued, found, strict=True):
            if value is not None:
                self._l1.set(key, value)
                self._settle(key, future, (value, True))
                continue
            try:
                work = asyncio.ensure_future(compute())
            except Exception as error:
                _fail(future, error)
                self._leave(key, future)
                continue
            self._resolving.add(work)
            work.add_done_callback(
                partial(self._on_computed_after_read, key, future, self._clock())
            )

    def _on_computed_after_read(
        self,
        key: bytes,
        future: asyncio.Future[Lookup],
        started: float,
        work: asyncio.Future[float],
    ) -> None:
        self._resolving.discard(work)
        if work.cancelled():
            _fail(future, asyncio.CancelledError())
            self._leave(key, future)
            return
        error = work.exception()
        if error is not None:
            _fail(future, error)
            self._leave(key, future)
            return
        self.read_policy.record_compute(self._clock() - started)
        self._settle(key, future, (self._store_computed(key, work.result()), False))

    async def _resolve(
        self,
        entries: list[_Entry],
        compute: Callable[[list[int]], Awaitable[Sequence[float]]],
        read_l2: bool,
    ) -> None:
        """Answer every entry's future from L2 (if `read_l2`) or one `compute` call, then leave
        the in-flight map. Never raises but for its own cancellation: errors go to the futures."""
        try:
            missing: list[int] = list(range(len(entries)))
            if read_l2:
                found = await self._l2_lookup([key for key, _ in entries])
                missing = []
                for position, value in enumerate(found):
                    if value is None:
                        missing.append(position)
                    else:
                        key, future = entries[position]
                        self._l1.set(key, value)
                        self._settle(key, future, (value, True))
                if not missing:
                    return
            results = await compute(missing)
            if len(results) != len(missing):
                raise ValueError(
                    f"the computation returned {len(results)} results for {len(missing)} rows"
                )
            stored: list[tuple[bytes, float]] = []
            for position, result in zip(missing, results, strict=True):
                key, future = entries[position]
                value = float(result)
                self._computed += 1
                if is_cacheable(value):
                    self._l1.set(key, value)
                    stored.append((key, value))
                else:
                    self._uncacheable += 1
                self._settle(key, future, (value, False))
            self._enqueue_writes(stored)
        except BaseException as error:
            for key, future in entries:
                _fail(future, error)
                self._leave(key, future)
            if not isinstance(error, Exception):
                raise

    def _settle(self, key: bytes, future: asyncio.Future[Lookup], result: Lookup) -> None:
        self._leave(key, future)
        if not future.done():
            future.set_result(result)

    def _leave(self, key: bytes, future: asyncio.Future[Lookup]) -> None:
        if self._inflight.get(key) is future:
            del self._inflight[key]

    async def _l2_lookup(self, keys: list[bytes]) -> list[float | None]:
        store = self._store
        if store is None:
            return [None] * len(keys)
        redis_key = self.keys.redis_key
        names = [redis_key(key) for key in keys]
        started = self._clock()
        raw = await store.get_many(names)
        if raw is None:
            self._l2_unavailable += len(keys)
            self._l2_misses += len(keys)
            return [None] * len(keys)
        elapsed = self._clock() - started
        decode, start = self._codec.decode, self._digest_start
        found: list[float | None] = []
        hits = 0
        for name, item in zip(names, raw, strict=True):
            value = None if item is None else decode(item, name[start:])
            if value is not None:
                hits += 1
            elif item is not None:
                self._l2_corrupt += 1
            found.append(value)
        self._l2_hits += hits
        self._l2_misses += len(keys) - hits
        self.read_policy.record_read(len(keys), hits, elapsed)
        return found

    def _enqueue_writes(self, items: list[tuple[bytes, float]]) -> None:
        if self._store is None or self._closed or not items:
            return
        room = max(0, self.max_pending_writes - self._pending_writes)
        if len(items) > room:
            self._dropped_writes += len(items) - room
            items = items[:room]
            if not items:
                return
        self._write_buffer.extend(items)
        self._pending_writes += len(items)
        if len(self._write_buffer) >= self._write_batch:
            if self._write_handle is not None:
                self._write_handle.cancel()
            self._start_writes()
        elif self._write_handle is None:
            self._write_handle = asyncio.get_running_loop().call_later(
                self.l2_write_delay, self._start_writes
            )

    def _start_writes(self) -> None:
        self._write_handle = None
        items, self._write_buffer = self._write_buffer, []
        if items:
            task = asyncio.get_running_loop().create_task(self._write(items))
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)

    async def _write(self, items: list[tuple[bytes, float]]) -> None:
        store = self._store
        assert store is not None  # noqa: S101 (writes are only queued with an L2)
        try:
            encode, start, redis_key = self._codec.encode, self._digest_start, self.keys.redis_key
            payload = []
            for key, value in items:
                name = redis_key(key)
                payload.append((name, encode(value, name[start:])))
            if await store.set_many(payload, self.l2_ttl_seconds):
                self._written += len(items)
            else:
                self._failed_writes += len(items)
        finally:
            self._pending_writes -= len(items)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._resolving.add(task)
        task.add_done_callback(self._resolving.discard)
        return task


def _fail(future: asyncio.Future[Lookup], error: BaseException) -> None:
    if future.done():
        return
    if isinstance(error, asyncio.CancelledError):
        future.cancel()
        return
    future.set_exception(error)
    # Every waiter re-raises it; a future nobody waits for must not be logged as unretrieved.
    future.exception()
