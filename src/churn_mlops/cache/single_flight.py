"""Single-flight: the lookups of one key that overlap in one worker share one answer.

While a key's answer is being obtained (read from L2, computed, or both), later lookups of the
same key wait for it instead of starting their own: 200 identical cold requests cost one model
row (tests/unit/cache/test_single_flight.py; over HTTP, tests/api/predictions/test_cache_api.py).
A failure reaches every waiter and caches nothing.

Each key in flight has one `Flight`, whoever started it:

- A miss that does not read L2 (the hot path) starts its computation in its own turn: the
  flight's `work` is the micro-batcher's future itself (any other awaitable is wrapped in a
  task), and its owner, the request that missed, awaits it directly. No `asyncio.shield` for
  it: awaiting a future answered one turn later cost 4.2 us of CPU through a shield against
  2.1 us directly (100,000 awaits in a uvloop loop). That, with no task of the cache in
  between and L1 keys that need no hashing (`keys.py`), took a miss from 19.5 to 10.9 us of
  CPU per `predict_one` call, against 8.4 us with the cache off (`python -m benchmarks
  cache-cpu --rounds 7 --concurrency 32`, then the harness as it was then;
  docs/performance.md, "Prediction cache").
- A miss that reads L2 first, and each missing key of a batch, get a `work` future that the
  cache settles from a task of its own (the L2 read, then the computation); a single-key miss
  awaits it directly as well.

Lookups that arrive meanwhile wait on `shared`, one future made when the first of them arrives,
through `asyncio.shield`: one that goes away (a client disconnect cancels its request) cancels
neither the work nor the others. If the owner goes away, the work it awaited is cancelled with
it (a task cancels what it awaits; the micro-batcher drops a cancelled row unscored) and, if
others wait, started once more for them, so no row is scored twice. A computed answer is
stored once, by whoever finishes the flight: the owner after its await, a done-callback once
the owner is gone, or the task that read L2 or ran the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

ComputeOne = Callable[[], Awaitable[float]]
"""Starts computing one answer; an asyncio.Future (the micro-batcher's) is used as it is, any
other awaitable is wrapped in a task."""
StoreComputed = Callable[[bytes, float, "float | None"], float]
"""Keeps a computed answer of a key, timed from the given start (None: not timed), and returns
it as a Python float."""


class Flight:
    """One key's answer on its way."""

    __slots__ = ("cached", "compute", "shared", "started", "work")

    def __init__(
        self, work: asyncio.Future[float], compute: ComputeOne | None, started: float | None
    ) -> None:
        self.work = work
        self.compute = compute
        """Starts the computation again for the waiters of an owner that went away; None for
        the keys of a batch, whose work no caller awaits."""
        self.started = started
        """Clock reading when the computation started, to time it; None: not timed."""
        self.shared: asyncio.Future[float] | None = None
        self.cached = False
        """Whether the answer came from L2 rather than from the model."""

    def joined(self) -> asyncio.Future[float]:
        """The future every later lookup of this key waits on (through a shield)."""
        shared = self.shared
        if shared is None:
            shared = self.shared = asyncio.get_running_loop().create_future()
        return shared


class SingleFlight:
    """The keys in flight in one cache, and the work that must end before it closes."""

    __slots__ = ("_store_computed", "by_key", "closed", "get", "running")

    def __init__(self, store_computed: StoreComputed) -> None:
        self.by_key: dict[bytes, Flight] = {}
        """The flight of each key in flight; a flight leaves it when it is settled or failed."""
        self._store_computed = store_computed
        self.get: Callable[[bytes], Flight | None] = self.by_key.get
        """The flight of a key, or None. (The dict's own method: one Python call less a miss.)"""
        self.running: set[asyncio.Future[Any]] = set()
        """Computations nobody awaits any more and the cache's own tasks."""
        self.closed = False
        """Set when the cache closes: a cancelled computation is no longer started again."""

    def start(self, key: bytes, compute: ComputeOne, started: float | None) -> Flight:
        """Start computing `key` now; the caller owns the flight and awaits its `work`. If
        `compute()` itself raises, only the caller sees it (no flight is registered)."""
        awaitable = compute()
        work = (
            awaitable if isinstance(awaitable, asyncio.Future) else asyncio.ensure_future(awaitable)
        )
        flight = self.by_key[key] = Flight(work, compute, started)
        return flight

    def open(self, key: bytes, compute: ComputeOne | None) -> Flight:
        """A flight whose `work` the cache settles itself (after an L2 read, or for a batch)."""
        work: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        flight = self.by_key[key] = Flight(work, compute, None)
        return flight

    def land(self, key: bytes, flight: Flight, result: float) -> float:
        """Store a computed answer and hand it to whoever waits for `flight`."""
        value = self._store_computed(key, result, flight.started)
        self.settle(key, flight, value)
        return value

    def settle(self, key: bytes, flight: Flight, value: float, *, cached: bool = False) -> None:
        """Hand `value` to whoever waits for `flight`; a new lookup of `key` no longer joins it."""
        flights = self.by_key
        if flights.get(key) is flight:
            del flights[key]
        flight.cached = cached
        work = flight.work
        if not work.done():
            work.set_result(value)
        shared = flight.shared
        if shared is not None and not shared.done():
            shared.set_result(value)

    def fail(self, key: bytes, flight: Flight, error: BaseException) -> None:
        """Every waiter of `flight` gets `error`; nothing is stored."""
        flights = self.by_key
        if flights.get(key) is flight:
            del flights[key]
        _fail(flight.work, error)
        if flight.shared is not None:
            _fail(flight.shared, error)

    def abandon(self, key: bytes, flight: Flight) -> None:
        """The owner stopped awaiting `flight.work` (it was cancelled, or the work failed):
        finish the flight without it, now or when the work ends."""
        work = flight.work
        if work.done():
            self._finish(key, flight, work)
        else:
            self.follow(key, flight, work)

    def follow(self, key: bytes, flight: Flight, work: asyncio.Future[float]) -> None:
        """Finish `flight` with the outcome of `work` when it ends; no caller awaits `work`."""
        self.running.add(work)
        work.add_done_callback(partial(self._finish, key, flight))

    def track(self, task: asyncio.Future[Any]) -> None:
        """A task of the cache that settles flights: `close()` gives it its grace period."""
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    def _finish(self, key: bytes, flight: Flight, work: asyncio.Future[float]) -> None:
        self.running.discard(work)
        if work.cancelled():
            shared = flight.shared
            if (
                work is flight.work
                and shared is not None
                and not shared.done()
                and flight.compute is not None
                and not self.closed
            ):
                self._restart(key, flight, flight.compute, shared)
            else:
                self.fail(key, flight, asyncio.CancelledError())
            return
        error = work.exception()
        if error is not None:
            self.fail(key, flight, error)
        else:
            self.land(key, flight, work.result())

    def _restart(
        self, key: bytes, flight: Flight, compute: ComputeOne, shared: asyncio.Future[float]
    ) -> None:
        """The owner went away and others wait: the computation is theirs now."""
        try:
            restarted = self.start(key, compute, flight.started)
        except Exception as error:
            self.fail(key, flight, error)
            return
        restarted.shared = shared
        self.follow(key, restarted, restarted.work)


def _fail(future: asyncio.Future[float], error: BaseException) -> None:
    if future.done():
        return
    if isinstance(error, asyncio.CancelledError):
        future.cancel()
        return
    future.set_exception(error)
    # Every waiter re-raises it; a future nobody waits for must not be logged as unretrieved.
    future.exception()
