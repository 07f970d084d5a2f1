from __future__ import annotations

import pytest

from churn_mlops.security.errors import RateLimited
from churn_mlops.security.principal import RateLimit
from churn_mlops.security.ratelimit import (
    BadBucketReply,
    LocalTokenBuckets,
    RateLimiter,
    parse_bucket_reply,
)
from churn_mlops.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_the_burst_then_says_when_a_token_is_due() -> None:
    clock = Clock()
    buckets = LocalTokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)


def test_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    clock = Clock()
    buckets = LocalTokenBuckets(rate=2.0, burst=3, clock=clock)
    for _ in range(3):
        buckets.take("a")
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    clock.now += 100
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") > 0


def test_buckets_of_two_principals_are_separate() -> None:
    buckets = LocalTokenBuckets(rate=1.0, burst=1, clock=Clock())
    assert buckets.take("key:a") == 0.0
    assert buckets.take("key:a") > 0
    assert buckets.take("key:b") == 0.0


def test_buckets_forget_the_oldest_past_max_keys() -> None:
    buckets = LocalTokenBuckets(rate=1.0, burst=1, max_keys=2, clock=Clock())
    buckets.take("a")
    buckets.take("b")
    buckets.take("c")  # evicts a: its next request starts with a full bucket
    assert buckets.take("a") == 0.0


def test_check_local_raises_rate_limited_with_headers() -> None:
    limiter = RateLimiter(rate=10.0, burst=2, clock=Clock())
    limiter.check_local("key:a")
    limiter.check_local("key:a")
    with pytest.raises(RateLimited) as refused:
        limiter.check_local("key:a")
    assert refused.value.status == 429
    assert refused.value.headers == {
        "Retry-After": "1",
        "RateLimit-Limit": "2",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "1",
        "RateLimit-Policy": "2;w=1",
    }


def _refused_at(limiter: RateLimiter, clock: Clock, per_second: int, seconds: int) -> int:
    """Requests of one key refused while it sends `per_second`, evenly spaced, for `seconds`."""
    refused = 0
    for _ in range(per_second * seconds):
        clock.now += 1.0 / per_second
        try:
            limiter.check_local("key:crm")
        except RateLimited:
            refused += 1
    return refused


def test_the_default_limit_lets_one_caller_use_a_whole_instance() -> None:
    """docs/performance.md: one instance serves about 20,000 requests a second; a CRM that
    calls with one key is not throttled below that, and a caller far past it is."""
    settings = Settings(environment="test")
    clock = Clock()
    limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst, clock=clock)
    assert _refused_at(limiter, clock, per_second=20_000, seconds=3) == 0
    assert _refused_at(limiter, clock, per_second=40_000, seconds=3) > 0


def test_a_principal_with_its_own_limit_gets_its_own_bucket_size_and_headers() -> None:
    clock = Clock()
    own = {"key:crm": RateLimit(per_second=1.0, burst=4)}
    limiter = RateLimiter(rate=10.0, burst=2, limits=own.get, clock=clock)
    for _ in range(4):
        limiter.check_local("key:crm")
    with pytest.raises(RateLimited) as refused:
        limiter.check_local("key:crm")
    limiter.check_local("key:svc")
    limiter.check_local("key:svc")
    with pytest.raises(RateLimited):
        limiter.check_local("key:svc")
    assert refused.value.headers is not None
    assert refused.value.headers["RateLimit-Limit"] == "4"
    assert refused.value.headers["RateLimit-Policy"] == "4;w=4"


@pytest.mark.parametrize(
    "reply",
    [1, b"ok", [1], [b"x", 0], [1, 0, 0], [2, 0], [0, -1.5], None],
    ids=["int", "bytes", "one", "bytes-item", "three", "not-a-flag", "float", "none"],
)
def test_a_reply_that_is_not_a_buckets_is_refused(reply: object) -> None:
    with pytest.raises(BadBucketReply):
        parse_bucket_reply(reply, rate=10.0)


def test_a_buckets_wait_is_at_most_one_token_at_its_rate() -> None:
    assert parse_bucket_reply([1, 0], rate=10.0) == 0.0
    assert parse_bucket_reply([0, 40], rate=10.0) == pytest.approx(0.04)
    assert parse_bucket_reply([0, 10**18], rate=10.0) == pytest.approx(0.1)


class _ClosingFails:
    async def aclose(self) -> None:
        raise TimeoutError("Timeout connecting to server")


@pytest.mark.anyio
async def test_close_never_fails_the_shutdown_when_redis_times_out() -> None:
    # Disconnecting within the 5 ms budget timed out in about one SIGTERM in 40 under load, and
    # the exception failed the application's whole shutdown.
    limiter = RateLimiter(10.0, 10, redis_url="redis://127.0.0.1:6379/0")
    limiter._redis = _ClosingFails()  # type: ignore[assignment]
    await limiter.close()
