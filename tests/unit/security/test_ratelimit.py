from __future__ import annotations

import pytest

from churn_mlops.security.errors import RateLimited
from churn_mlops.security.ratelimit import LocalTokenBuckets, RateLimiter


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
