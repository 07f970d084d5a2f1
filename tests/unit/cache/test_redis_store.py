"""RedisStore without a server: redis-py's public `Redis.mget` is replaced by a fake, so these
tests check the store's own contract (bounded, never raising, breaker) and touch no network."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from churn_mlops.cache.breaker import BreakerState
from churn_mlops.cache.redis_store import RedisStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]

UNREACHABLE = "redis://127.0.0.1:9/0"


class FakeMget:
    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.calls = 0

    async def __call__(self, keys: Sequence[str]) -> list[bytes | None]:
        self.calls += 1
        if self.behaviour == "hang":
            await asyncio.sleep(3600)
        if self.behaviour == "refuse":
            raise RedisConnectionError("Connection refused")
        if self.behaviour == "bug":
            raise RuntimeError("something unexpected")
        return [b"value" for _ in keys]


@pytest.fixture
async def store() -> AsyncIterator[RedisStore]:
    redis_store = RedisStore(
        UNREACHABLE, read_timeout=0.05, failure_threshold=3, cooldown_seconds=60
    )
    yield redis_store
    await redis_store.close()


def _fake(monkeypatch: pytest.MonkeyPatch, behaviour: str) -> FakeMget:
    fake = FakeMget(behaviour)

    async def mget(client: Redis, keys: Sequence[str], *args: Any) -> list[bytes | None]:
        return await fake(keys)

    monkeypatch.setattr(Redis, "mget", mget)
    return fake


async def test_get_many_returns_the_values(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake(monkeypatch, "answer")
    assert await store.get_many(["a", "b"]) == [b"value", b"value"]


async def test_empty_calls_touch_nothing(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake(monkeypatch, "refuse")
    assert await store.get_many([]) == []
    assert await store.set_many([], ttl_seconds=10) is True
    assert fake.calls == 0


async def test_a_hanging_call_ends_at_the_timeout_as_unavailable(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake(monkeypatch, "hang")
    start = time.perf_counter()
    assert await store.get_many(["a"]) is None
    assert time.perf_counter() - start < 1.0
    assert store.stats().timeouts == 1


@pytest.mark.parametrize("behaviour", ["refuse", "bug"])
async def test_errors_are_unavailable_never_raised_and_open_the_breaker(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch, behaviour: str
) -> None:
    fake = _fake(monkeypatch, behaviour)
    for _ in range(10):
        assert await store.get_many(["a"]) is None
    stats = store.stats()
    assert fake.calls == 3
    assert stats.errors == 3
    assert stats.breaker.state is BreakerState.OPEN
    assert stats.breaker.short_circuited == 7


async def test_an_unexpected_error_is_logged_once(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _fake(monkeypatch, "bug")
    with caplog.at_level(logging.ERROR, logger="churn_mlops.cache"):
        for _ in range(3):
            await store.get_many(["a"])
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


async def test_a_cancelled_probe_lets_the_next_call_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    store = RedisStore(UNREACHABLE, read_timeout=5, failure_threshold=1, cooldown_seconds=0)
    try:
        fake = _fake(monkeypatch, "refuse")
        assert await store.get_many(["a"]) is None
        assert store.breaker.state is BreakerState.OPEN
        fake.behaviour = "hang"
        probe = asyncio.create_task(store.get_many(["a"]))
        await asyncio.sleep(0.01)
        assert store.breaker.state is BreakerState.HALF_OPEN
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        fake.behaviour = "answer"
        assert await store.get_many(["a"]) == [b"value"]
        assert store.breaker.state is BreakerState.CLOSED
    finally:
        await store.close()


async def test_a_closed_store_answers_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake(monkeypatch, "answer")
    store = RedisStore(UNREACHABLE)
    await store.close()
    assert await store.get_many(["a"]) is None
    assert fake.calls == 0
