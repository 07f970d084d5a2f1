"""The shared token bucket against the machine's Redis, and its fail-open when Redis is gone."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from benchmarks.servers import free_port
from churn_mlops.security.errors import RateLimited
from churn_mlops.security.ratelimit import RateLimiter
from tests.fixtures.redis_server import keys_removed_after, require_redis
from tests.fixtures.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@pytest.fixture
def redis_url() -> str:
    return require_redis()


@pytest.fixture
def prefix(redis_url: str):  # type: ignore[no-untyped-def]
    name = f"test-rl-{uuid.uuid4().hex[:12]}"
    with keys_removed_after(redis_url, name):
        yield name


def _limiter(url: str, prefix: str, burst: int = 3) -> RateLimiter:
    # 0.001 tokens a second: nothing refills during the test.
    return RateLimiter(0.001, burst, redis_url=url, key_prefix=prefix, timeout=0.5)


async def test_two_workers_share_one_bucket_per_principal(redis_url: str, prefix: str) -> None:
    first, second = _limiter(redis_url, prefix), _limiter(redis_url, prefix)
    try:
        await first.check("key:a")
        await second.check("key:a")
        await first.check("key:a")
        with pytest.raises(RateLimited) as refused:
            await second.check("key:a")
        await second.check("key:b")  # another principal, another bucket
        assert refused.value.retry_after >= 1
        assert first.stats.failures == second.stats.failures == 0
    finally:
        await first.close()
        await second.close()
    client = redis.Redis.from_url(redis_url)
    try:
        assert sorted(client.scan_iter(match=f"{prefix}:*")) == [
            f"{prefix}:key:a".encode(),
            f"{prefix}:key:b".encode(),
        ]
        assert 0 < client.pttl(f"{prefix}:key:a") <= 3_001_000
    finally:
        client.close()


async def test_unreachable_redis_fails_open_to_the_local_bucket() -> None:
    limiter = RateLimiter(
        0.001, 2, redis_url=f"redis://127.0.0.1:{free_port()}/0", timeout=0.2, backoff_seconds=60
    )
    try:
        await limiter.check("key:a")  # Redis refused: the local bucket decided
        await limiter.check("key:a")  # within the back-off: Redis is not asked
        with pytest.raises(RateLimited):
            await limiter.check("key:a")
    finally:
        await limiter.close()
    assert limiter.stats.failures == 1
    assert limiter.stats.skipped == 2
    assert limiter.stats.last_error is not None


async def test_hanging_redis_costs_at_most_the_timeout_then_the_local_bucket_decides(
    redis_url: str, prefix: str
) -> None:
    proxy = TcpProxy("127.0.0.1", 6379)
    await proxy.start()
    limiter = RateLimiter(
        0.001, 5, redis_url=proxy.url, key_prefix=prefix, timeout=0.05, backoff_seconds=60
    )
    try:
        await limiter.check("key:a")  # through the proxy: shared
        await proxy.blackhole()
        started = time.monotonic()
        await limiter.check("key:a")  # Redis swallows the call: the local bucket decides
        waited = time.monotonic() - started
    finally:
        await limiter.close()
        await proxy.close()
    assert limiter.stats.failures == 1
    assert limiter.stats.calls == 2
    assert waited < 1.0  # bounded by the 50 ms budget, with room for a busy machine


@pytest.mark.parametrize(
    ("tokens", "ts"),
    [
        ("-inf", "0"),
        ("-1e308", "0"),
        ("nan", "0"),
        ("inf", "0"),
        ("-5", "now"),
        ("-1e308", "now"),
        ("1e308", "0"),
        ("0", "1e308"),
        ("0", "inf"),
        ("0", "nan"),
        ("0", "-inf"),
        ("x", "y"),
    ],
)
async def test_a_planted_out_of_range_bucket_is_reset_to_a_full_one(
    redis_url: str, prefix: str, tokens: str, ts: str
) -> None:
    """Whoever can write to Redis can plant any bucket: a corrupt one is a fresh bucket, which
    lets exactly `burst` requests through and then refuses with a Retry-After of its rate."""
    client = redis.Redis.from_url(redis_url)
    if ts == "now":
        ts = str(int(time.time() * 1000))
    client.hset(f"{prefix}:key:a", mapping={"tokens": tokens, "ts": ts})
    limiter = RateLimiter(1.0, 3, redis_url=redis_url, key_prefix=prefix, timeout=0.5)
    try:
        for _ in range(3):
            await limiter.check("key:a")
        with pytest.raises(RateLimited) as refused:
            await limiter.check("key:a")
        stored = client.hgetall(f"{prefix}:key:a")
    finally:
        await limiter.close()
        client.close()
    assert limiter.stats.failures == 0
    assert refused.value.retry_after == 1
    assert 0 <= float(stored[b"tokens"]) < 1
    assert abs(float(stored[b"ts"]) / 1000 - time.time()) < 60
