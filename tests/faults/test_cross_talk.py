"""No cross-talk: a Redis command abandoned mid-flight (timed out, or its caller cancelled) must
never leave its reply for the next command on the same connection (the class of bug behind
redis-py CVE-2023-28858/28859). The store has ONE pooled connection, so a connection that went
back to the pool with a reply still on its way would hand that reply to the next GET."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
import redis

from churn_mlops.cache.redis_store import RedisStore
from tests.fixtures.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

REPLY_DELAY = 0.3
READ_TIMEOUT = 0.05


@pytest.fixture
def planted(raw_redis: redis.Redis, key_prefix: str) -> dict[str, bytes]:
    """40 keys, each holding a value that names it."""
    values = {f"{key_prefix}:crosstalk:{i}": f"value of {i}".encode() for i in range(40)}
    raw_redis.mset(values)  # type: ignore[arg-type]
    return values


@pytest.fixture
async def store(proxy: TcpProxy) -> AsyncIterator[RedisStore]:
    redis_store = RedisStore(
        proxy.url, read_timeout=READ_TIMEOUT, max_connections=1, failure_threshold=1_000_000
    )
    yield redis_store
    await redis_store.close()


async def _read_until_answered(store: RedisStore, key: str) -> bytes | None:
    """GET `key` until Redis answers in time (a busy machine may miss a tight timeout)."""
    for _ in range(500):
        values = await store.get_many([key])
        if values is not None:
            return values[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"Redis never answered in time: {store.stats()}")


async def _late_replies_arrive(proxy: TcpProxy) -> None:
    await proxy.pass_through()
    await asyncio.sleep(REPLY_DELAY + 0.2)


async def test_timed_out_read_leaves_no_reply_for_the_next_read(
    proxy: TcpProxy, store: RedisStore, planted: dict[str, bytes]
) -> None:
    keys = list(planted)
    await proxy.delay(REPLY_DELAY)
    for key in keys[:5]:
        assert await store.get_many([key]) is None
    assert store.stats().timeouts == 5
    await _late_replies_arrive(proxy)
    for key in keys[5:]:
        assert await _read_until_answered(store, key) == planted[key]


async def test_cancelled_read_leaves_no_reply_for_the_next_read(
    proxy: TcpProxy, store: RedisStore, planted: dict[str, bytes]
) -> None:
    keys = list(planted)
    await proxy.delay(REPLY_DELAY)
    for key in keys[:5]:
        lookup = asyncio.create_task(store.get_many([key]))
        await asyncio.sleep(READ_TIMEOUT / 5)  # the GET is sent, its reply held by the proxy
        lookup.cancel()
        with pytest.raises(asyncio.CancelledError):
            await lookup
    await _late_replies_arrive(proxy)
    for key in keys[5:]:
        assert await _read_until_answered(store, key) == planted[key]


async def test_timed_out_bulk_read_leaves_no_reply_for_the_next_read(
    proxy: TcpProxy, planted: dict[str, bytes]
) -> None:
    keys = list(planted)
    store = RedisStore(proxy.url, read_timeout=READ_TIMEOUT, max_connections=1, keys_per_command=3)
    try:
        await proxy.delay(REPLY_DELAY)
        assert await store.get_many(keys[:10]) is None  # a pipeline of 4 MGETs
        await _late_replies_arrive(proxy)
        for key in keys[10:20]:
            assert await _read_until_answered(store, key) == planted[key]
        for _ in range(500):
            if (values := await store.get_many(keys[20:])) is not None:
                break
            await asyncio.sleep(0.02)
        assert values == [planted[key] for key in keys[20:]]
    finally:
        await store.close()


async def test_replies_always_match_their_keys_under_random_cancellation(
    proxy: TcpProxy, planted: dict[str, bytes]
) -> None:
    keys = list(planted)
    rng = random.Random(7)
    store = RedisStore(proxy.url, read_timeout=0.03, max_connections=4, failure_threshold=1_000_000)
    wrong: list[tuple[str, bytes | None]] = []
    answered = 0

    async def lookup(key: str) -> None:
        nonlocal answered
        values = await store.get_many([key])
        if values is not None:
            answered += 1
            if values != [planted[key]]:
                wrong.append((key, values[0]))

    try:
        for round_number in range(30):
            # Replies sometimes later than the timeout, sometimes earlier; callers sometimes
            # cancelled while they wait.
            await proxy.delay(rng.choice([0.0, 0.01, 0.02, 0.05]))
            tasks = [asyncio.create_task(lookup(rng.choice(keys))) for _ in range(8)]
            await asyncio.sleep(rng.uniform(0, 0.03))
            for task in tasks:
                if rng.random() < 0.3:
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if round_number % 10 == 9:
                await _late_replies_arrive(proxy)
        await _late_replies_arrive(proxy)
        for key in keys:
            assert await _read_until_answered(store, key) == planted[key]
    finally:
        await store.close()
    assert wrong == []
