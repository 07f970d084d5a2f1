"""L2WriteBuffer without a server: a fake store records the commands it is sent."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from churn_mlops.cache.codec import ValueCodec
from churn_mlops.cache.keys import PredictionKeys
from churn_mlops.cache.write_behind import L2WriteBuffer
from tests.fixtures.cache_values import TEST_CACHE_SECRET

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]

KEYS = PredictionKeys("churn:test", "v1")
CODEC = ValueCodec("v1", TEST_CACHE_SECRET)


class FakeStore:
    """Takes `set_many` commands; each waits for `gate` (if set) and succeeds if `accepts`."""

    def __init__(self, gate: asyncio.Event | None = None, accepts: bool = True) -> None:
        self.gate = gate
        self.accepts = accepts
        self.commands: list[list[tuple[str, bytes]]] = []
        self.ttls: list[float] = []

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl_seconds: float) -> bool:
        self.commands.append(list(items))
        self.ttls.append(ttl_seconds)
        if self.gate is not None:
            await self.gate.wait()
        return self.accepts


def _buffer(store: FakeStore, **options: Any) -> L2WriteBuffer:
    settings: dict[str, Any] = {
        "ttl_seconds": 60.0,
        "delay": 0.01,
        "batch_size": 256,
        "max_pending": 100,
    }
    settings.update(options)
    return L2WriteBuffer(store, KEYS, CODEC, **settings)  # type: ignore[arg-type]


def _key(index: int) -> bytes:
    return bytes([index]) * 76


async def test_answers_added_within_the_delay_leave_as_one_command() -> None:
    store = FakeStore()
    buffer = _buffer(store, delay=0.05)
    for index in range(3):
        buffer.add(_key(index), index / 10)
        await asyncio.sleep(0)
    assert (store.commands, buffer.pending) == ([], 3)
    await asyncio.sleep(0.2)
    assert len(store.commands) == 1
    names = [name for name, _ in store.commands[0]]
    assert names == [KEYS.redis_key(_key(index)) for index in range(3)]
    assert CODEC.decode(store.commands[0][1][1], names[1]) == 0.1
    assert store.ttls == [60.0]
    assert (buffer.pending, buffer.written, buffer.failed) == (0, 3, 0)


async def test_a_full_command_leaves_at_the_next_turn_with_what_that_turn_added() -> None:
    store = FakeStore()
    buffer = _buffer(store, delay=60, batch_size=4)
    for index in range(6):  # one batch request's answers, stored in one turn
        buffer.add(_key(index), 0.5)
    assert store.commands == []
    for _ in range(3):
        await asyncio.sleep(0)
    assert [len(command) for command in store.commands] == [6]


async def test_answers_beyond_max_pending_are_dropped_and_counted() -> None:
    gate = asyncio.Event()
    store = FakeStore(gate)
    buffer = _buffer(store, max_pending=2)
    for index in range(5):
        buffer.add(_key(index), 0.5)
    buffer.flush()
    await asyncio.sleep(0)
    buffer.add(_key(9), 0.5)  # still 2 being written
    assert (buffer.pending, buffer.dropped) == (2, 4)
    gate.set()
    await buffer.wait()
    assert (buffer.pending, buffer.written, buffer.dropped) == (0, 2, 4)


async def test_a_write_redis_refuses_is_counted_as_failed() -> None:
    buffer = _buffer(FakeStore(accepts=False))
    buffer.add(_key(1), 0.5)
    await buffer.wait()
    assert (buffer.pending, buffer.written, buffer.failed) == (0, 0, 1)


async def test_discard_forgets_buffered_answers_and_waits_for_those_sent() -> None:
    gate = asyncio.Event()
    store = FakeStore(gate)
    buffer = _buffer(store, delay=60)
    buffer.add(_key(1), 0.5)
    buffer.flush()
    buffer.add(_key(2), 0.5)
    discarding = asyncio.create_task(buffer.discard())
    await asyncio.sleep(0.01)
    assert not discarding.done()  # the first answer is being written
    gate.set()
    await discarding
    await asyncio.sleep(0.01)
    assert [len(command) for command in store.commands] == [1]
    assert (buffer.pending, buffer.written) == (0, 1)


async def test_close_sends_what_is_buffered_and_refuses_later_answers() -> None:
    store = FakeStore()
    buffer = _buffer(store, delay=60)
    buffer.add(_key(1), 0.5)
    buffer.close()
    buffer.add(_key(2), 0.5)
    await asyncio.wait(set(buffer.running))
    assert [len(command) for command in store.commands] == [1]
    assert (buffer.pending, buffer.written, buffer.dropped) == (0, 1, 0)
