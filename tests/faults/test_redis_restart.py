"""A private redis-server stopped in the middle of load and started again on the same port:
every lookup is answered correctly throughout, and L2 serves hits again after the cool-down."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from benchmarks.servers import free_port
from churn_mlops.cache import BreakerState, PredictionCache
from tests.faults.conftest import COOLDOWN, CacheFactory
from tests.fixtures.cache import cached_answers, predict, store_answers
from tests.fixtures.redis_server import RedisServerProcess

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

LATENCY_BOUND = 1.0


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RedisServerProcess]:
    RedisServerProcess.binary()  # fails under CI, skips elsewhere, if there is none
    process = RedisServerProcess(free_port(), tmp_path)
    await process.start()
    yield process
    await process.stop()


def _answer(key: bytes) -> float:
    return int.from_bytes(hashlib.blake2b(key, digest_size=3).digest(), "big") / 0xFFFFFF


async def _compute(key: bytes) -> float:
    return _answer(key)


async def _until_l2_hit(writer: PredictionCache, reader: PredictionCache, key: bytes) -> None:
    """Write `key` through one worker until another reads it from L2 (at most ~10 s)."""
    for _ in range(200):
        await store_answers(writer, [(key, _answer(key))])
        await writer.wait_for_writes()
        if await cached_answers(reader, [key]) == [_answer(key)]:  # L1 is off: from L2
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no L2 hit: {reader.stats().l2}")


async def test_cache_answers_through_a_redis_restart_and_recovers(
    server: RedisServerProcess, make_cache: CacheFactory
) -> None:
    # L1 off in both workers, so that every lookup goes to Redis.
    worker_a = make_cache(server.url, l1_size=0, l2_read_timeout=0.1, l2_write_timeout=0.1)
    worker_b = make_cache(server.url, l1_size=0, l2_read_timeout=0.1, l2_write_timeout=0.1)
    rows = np.arange(200 * 19, dtype=np.float32).reshape(200, 19)
    keys = worker_a.keys.keys_for_rows(rows)
    await _until_l2_hit(worker_a, worker_b, keys[0])

    stop = asyncio.Event()
    answered = 0
    wrong: list[bytes] = []
    slowest = 0.0

    async def load(worker: PredictionCache, offset: int) -> None:
        nonlocal answered, slowest
        position = offset
        while not stop.is_set():
            key = keys[position % len(keys)]
            position += 7
            start = time.perf_counter()
            value, _ = await predict(worker, key, partial(_compute, key))
            slowest = max(slowest, time.perf_counter() - start)
            answered += 1
            if value != _answer(key):
                wrong.append(key)
            await asyncio.sleep(0.001)

    tasks = [
        asyncio.create_task(load(worker, offset))
        for offset in range(8)
        for worker in (worker_a, worker_b)
    ]
    try:
        await asyncio.sleep(0.5)
        await server.stop()
        answered_at_stop = answered
        await asyncio.sleep(0.5 + COOLDOWN)
        answered_while_down = answered - answered_at_stop
        await server.start()
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    assert wrong == []
    assert answered_while_down > 0
    assert slowest < LATENCY_BOUND
    assert worker_a.stats().l2.breaker_outages >= 1 or worker_b.stats().l2.breaker_outages >= 1

    # Redis restarted empty; once the cool-down has passed, writes and hits flow again.
    await _until_l2_hit(worker_a, worker_b, keys[1])
    assert worker_b.stats().l2.breaker_state is BreakerState.CLOSED
