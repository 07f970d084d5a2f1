"""Fail-open: whatever Redis does (slow, silent, resetting, refusing), every prediction is
answered correctly and within a bound set by the Redis timeout, and the cache recovers alone."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np
import pytest
import redis

from churn_mlops.cache import BreakerState, PredictionCache
from tests.faults.conftest import COOLDOWN, CacheFactory
from tests.fixtures.cache import cached_answers, predict, store_answers
from tests.fixtures.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

# A lookup may cost the Redis timeout (0.05 s) plus scheduling on a busy machine; a lookup that
# waited for Redis itself (0.3 s of delay, or forever) would blow through this.
LATENCY_BOUND = 1.0


def _keys(cache: PredictionCache, count: int) -> list[bytes]:
    rows = np.arange(count * 19, dtype=np.float32).reshape(count, 19)
    return cache.keys.keys_for_rows(rows)


def _answer(key: bytes) -> float:
    return int.from_bytes(hashlib.blake2b(key, digest_size=3).digest(), "big") / 0xFFFFFF


def _compute(key: bytes) -> Callable[[], Awaitable[float]]:
    async def compute() -> float:
        return _answer(key)

    return compute


def _skip_reads(cache: PredictionCache) -> None:
    """Make the adaptive read policy find that reads do not pay: misses go to the model."""
    cache.read_policy.record_read(100, 0, 0.001)  # no hits, 1 ms a read
    cache.read_policy.record_compute(0.000_01)  # 10 us a computed miss


async def _timed_lookup(cache: PredictionCache, key: bytes) -> tuple[float, float]:
    start = time.perf_counter()
    value, _ = await predict(cache, key, _compute(key))
    return value, time.perf_counter() - start


async def _apply(proxy: TcpProxy, mode: str) -> None:
    if mode == "pass":
        await proxy.pass_through()
    elif mode == "delay":
        await proxy.delay(0.3)
    elif mode == "blackhole":
        await proxy.blackhole()
    elif mode == "reset":
        await proxy.reset()
    else:
        await proxy.refuse()


@pytest.mark.parametrize("mode", ["pass", "delay", "blackhole", "reset", "refuse"])
async def test_every_prediction_is_answered_correctly_and_promptly(
    proxy: TcpProxy, make_cache: CacheFactory, redis_url: str, mode: str
) -> None:
    seeded = make_cache(redis_url, l2_read_timeout=2.0, l2_write_timeout=2.0)
    cache = make_cache(proxy.url, l1_size=0)
    keys = _keys(cache, 60)
    await store_answers(seeded, ((key, _answer(key)) for key in keys[:30]))
    await seeded.wait_for_writes()
    await _apply(proxy, mode)

    concurrent = await asyncio.gather(*(_timed_lookup(cache, key) for key in keys))
    sequential = [await _timed_lookup(cache, key) for key in keys[::3]]

    lookups = concurrent + sequential
    assert [value for value, _ in concurrent] == [_answer(key) for key in keys]
    assert [value for value, _ in sequential] == [_answer(key) for key in keys[::3]]
    assert max(seconds for _, seconds in lookups) < LATENCY_BOUND
    stats = cache.stats().l2
    if mode == "pass":
        assert stats.hits > 0
    else:
        assert stats.hits == 0
        assert stats.breaker_state is BreakerState.OPEN
        assert stats.breaker_short_circuited > 0


@pytest.mark.parametrize("mode", ["delay", "blackhole", "reset", "refuse"])
async def test_breaker_opens_on_repeated_failures_and_closes_when_redis_is_back(
    proxy: TcpProxy, make_cache: CacheFactory, redis_url: str, mode: str
) -> None:
    cache = make_cache(proxy.url, l1_size=0)
    key = _keys(cache, 1)[0]
    seeded = make_cache(redis_url, l2_read_timeout=2.0, l2_write_timeout=2.0)
    await store_answers(seeded, [(key, 0.5)])
    await seeded.wait_for_writes()
    await _apply(proxy, mode)

    for _ in range(3):
        assert await cached_answers(cache, [key]) == [None]
    assert cache.stats().l2.breaker_state is BreakerState.OPEN
    calls = cache.stats().l2.calls
    for _ in range(20):
        assert await cached_answers(cache, [key]) == [None]
    assert cache.stats().l2.calls == calls  # refused without touching Redis

    await proxy.pass_through()
    await asyncio.sleep(COOLDOWN)
    for _ in range(200):
        if (found := await cached_answers(cache, [key])) != [None]:
            break
        await asyncio.sleep(0.05)
    assert found == [0.5]  # L1 is off: from L2
    stats = cache.stats().l2
    assert stats.breaker_state is BreakerState.CLOSED
    assert stats.breaker_outages == 1


async def test_an_outage_is_logged_once_not_per_request(
    proxy: TcpProxy, make_cache: CacheFactory, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache(proxy.url, l1_size=0)
    keys = _keys(cache, 50)
    with caplog.at_level(logging.INFO, logger="churn_mlops.cache"):
        await proxy.refuse()
        for key in keys:
            await predict(cache, key, _compute(key))
        await asyncio.sleep(COOLDOWN)
        for key in keys:  # probes after each cool-down fail too
            await predict(cache, key, _compute(key))
        await proxy.pass_through()
        await asyncio.sleep(COOLDOWN)
        for _ in range(200):
            await cached_answers(cache, keys[:1])
            if cache.stats().l2.breaker_state is BreakerState.CLOSED:
                break
            await asyncio.sleep(0.05)
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "churn_mlops.cache"]
    assert [level for level, _ in records] == [logging.WARNING, logging.INFO]
    assert "ConnectionError" in records[0][1]
    assert cache.stats().l2.breaker_failures >= 3


async def test_writes_to_a_hanging_redis_are_bounded_and_the_excess_dropped(
    proxy: TcpProxy, make_cache: CacheFactory
) -> None:
    cache = make_cache(
        proxy.url, max_pending_writes=10, breaker_failure_threshold=100, l2_read_policy="adaptive"
    )
    _skip_reads(cache)  # only the writes meet the hanging Redis
    keys = _keys(cache, 100)
    await proxy.blackhole()
    await store_answers(cache, ((key, _answer(key)) for key in keys))
    stats = cache.stats()
    assert (stats.l2.pending_writes, stats.l2.dropped_writes, stats.l1.size) == (10, 90, 100)
    start = time.perf_counter()
    await cache.wait_for_writes()
    assert time.perf_counter() - start < LATENCY_BOUND
    stats = cache.stats()
    assert (stats.l2.pending_writes, stats.l2.failed_writes, stats.l2.timeouts) == (0, 10, 1)


async def test_a_cancelled_lookup_is_still_answered_for_the_other_waiters(
    proxy: TcpProxy, make_cache: CacheFactory
) -> None:
    cache = make_cache(proxy.url)
    key = _keys(cache, 1)[0]
    await proxy.blackhole()
    first = asyncio.create_task(predict(cache, key, _compute(key)))
    second = asyncio.create_task(predict(cache, key, _compute(key)))
    await asyncio.sleep(0.01)  # both wait on the hanging MGET
    first.cancel()
    value, cached = await asyncio.wait_for(second, LATENCY_BOUND)
    assert (value, cached) == (_answer(key), False)
    assert first.cancelled()


async def test_close_is_prompt_with_a_hanging_redis(
    proxy: TcpProxy, make_cache: CacheFactory, raw_redis: redis.Redis
) -> None:
    cache = make_cache(proxy.url, l2_read_policy="adaptive")
    _skip_reads(cache)  # only the writes meet the hanging Redis
    keys = _keys(cache, 20)
    await proxy.blackhole()
    await store_answers(cache, ((key, 0.5) for key in keys))
    start = time.perf_counter()
    await cache.close()
    assert time.perf_counter() - start < LATENCY_BOUND
    assert raw_redis.exists(*(cache.keys.redis_key(key) for key in keys)) == 0
