"""L2 write-behind: computed answers reach Redis off the response path, many to a command.

redis-py spends about 100 us of the worker's CPU per command, whatever its size (`pack_command`
and `writelines` in a cProfile of `predict_one`, docs/performance.md, "Where the time went"):
one command per event-loop turn, about 7 keys at 32 connections, cost more CPU than the misses
themselves. So answers are gathered for `delay` seconds, or until a command's worth
(`batch_size`) waits, and sent as one command from a task of their own; no response waits for it.
A full command's worth goes out at the next event-loop turn rather than at once, so that the
answers of one batch request, stored in one turn, still leave as one pipelined round trip.

Bounded: beyond `max_pending` answers waiting or being written, new ones are dropped and counted,
so a slow or hanging Redis cannot make memory grow. A write that fails is counted, not retried:
the answer is still in this worker's L1, and whichever worker computes it next writes it again.
"""

from __future__ import annotations

import asyncio

from churn_mlops.cache.codec import ValueCodec
from churn_mlops.cache.keys import PredictionKeys
from churn_mlops.cache.redis_store import RedisStore


class L2WriteBuffer:
    """Answers on their way to Redis, and what became of them."""

    __slots__ = (
        "_buffer",
        "_closed",
        "_codec",
        "_handle",
        "_keys",
        "_store",
        "batch_size",
        "delay",
        "dropped",
        "failed",
        "max_pending",
        "pending",
        "running",
        "ttl_seconds",
        "written",
    )

    def __init__(
        self,
        store: RedisStore,
        keys: PredictionKeys,
        codec: ValueCodec,
        *,
        ttl_seconds: float,
        delay: float,
        batch_size: int,
        max_pending: int,
    ) -> None:
        self._store = store
        self._keys = keys
        self._codec = codec
        self.ttl_seconds = ttl_seconds
        self.delay = delay
        self.batch_size = batch_size
        self.max_pending = max_pending
        self._buffer: list[tuple[bytes, float]] = []
        self._handle: asyncio.Handle | None = None
        self._closed = False
        self.running: set[asyncio.Task[None]] = set()
        """Writes sent and not yet answered."""
        self.pending = 0
        """Answers buffered or being written."""
        self.written = 0
        self.failed = 0
        """Answers that did not reach Redis (error, timeout, breaker open)."""
        self.dropped = 0
        """Answers never sent because `max_pending` were already waiting."""

    def add(self, key: bytes, value: float) -> None:
        """Queue one answer for Redis; after `close()`, or beyond `max_pending`, it is not."""
        if self._closed:
            return
        if self.pending >= self.max_pending:
            self.dropped += 1
            return
        buffer = self._buffer
        buffer.append((key, value))
        self.pending += 1
        if len(buffer) == self.batch_size:
            if self._handle is not None:
                self._handle.cancel()
            self._handle = asyncio.get_running_loop().call_soon(self._on_timer)
        elif self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self.delay, self._on_timer)

    def flush(self) -> None:
        """Send what is buffered now."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._send()

    async def wait(self) -> None:
        """Send what is buffered now and wait until every write has ended."""
        self.flush()
        if self.running:
            await asyncio.wait(set(self.running))

    async def discard(self) -> None:
        """Forget what is buffered (it is never sent) and wait for the writes already sent."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.pending -= len(self._buffer)
        self._buffer = []
        if self.running:
            await asyncio.wait(set(self.running))

    def close(self) -> None:
        """Send what is buffered; answers added later are not written. The owner waits for
        (or cancels) `running`."""
        self.flush()
        self._closed = True

    def _on_timer(self) -> None:
        self._handle = None
        self._send()

    def _send(self) -> None:
        items, self._buffer = self._buffer, []
        if items:
            task = asyncio.get_running_loop().create_task(self._write(items))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def _write(self, items: list[tuple[bytes, float]]) -> None:
        try:
            encode, redis_key = self._codec.encode, self._keys.redis_key
            payload = []
            for key, value in items:
                name = redis_key(key)
                payload.append((name, encode(value, name)))
            if await self._store.set_many(payload, self.ttl_seconds):
                self.written += len(items)
            else:
                self.failed += len(items)
        finally:
            self.pending -= len(items)
