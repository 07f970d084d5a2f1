"""Per-principal token buckets: in the worker by default, shared through Redis when configured.

A bucket holds at most `burst` tokens and refills at `rate` tokens a second; each request takes
one. Buckets are keyed by the authenticated principal, never by client address or
`X-Forwarded-For` (which a caller can forge and many callers can share). An API key may have a
rate limit of its own (`churn-mlops keys create --rate-limit`); `limits` tells the limiter which,
and every other principal gets the default.

The shared bucket is one Lua script per request (atomic on the Redis server, which also supplies
the clock). The script trusts nothing it reads: a bucket whose tokens are not a finite number in
[0, burst], or whose time is not a finite time no later than now, is corrupt (planted by
whoever can write to Redis, or left by a bug) and starts again full, as a new bucket does.
A Redis that is slow, down or misbehaving never fails a request: any error, a reply that is not
a bucket's, or no answer within `timeout`, and the worker's own bucket decides; for
`backoff_seconds` after a failure Redis is not asked at all, so an outage costs each request
nothing but the local check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from churn_mlops.security.errors import RateLimited
from churn_mlops.security.principal import RateLimit

logger = logging.getLogger("churn_mlops.security")

# KEYS[1] the bucket; ARGV rate (tokens per millisecond), burst. Returns {allowed, wait ms}.
# Tokens are stored as strings: Redis truncates Lua numbers to integers. `x ~= x` is NaN's test;
# the comparisons also refuse both infinities.
BUCKET_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil or tokens ~= tokens or ts ~= ts
    or tokens < 0 or tokens > burst or ts > now or ts < 0 then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + (now - ts) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
-- An idle bucket is full again after burst / rate; a week at most (Redis caps expiry times).
redis.call('PEXPIRE', KEYS[1], math.min(math.ceil(burst / rate) + 1000, 604800000))
return {allowed, wait}
"""


class BadBucketReply(ValueError):
    """Redis answered the bucket script with something that is not its reply."""


def parse_bucket_reply(reply: Any, rate: float) -> float:
    """The seconds to wait from the script's `{allowed, wait ms}` (0.0: allowed); a wait is at
    most what one token takes at `rate`. BadBucketReply for anything else."""
    if not isinstance(reply, list | tuple) or len(reply) != 2:
        raise BadBucketReply(f"not a pair: {type(reply).__name__}")
    allowed, wait_ms = reply
    if not isinstance(allowed, int) or not isinstance(wait_ms, int) or allowed not in (0, 1):
        raise BadBucketReply("not two integers")
    if allowed:
        return 0.0
    return min(max(wait_ms, 1) / 1000.0, 1.0 / rate)


class LocalTokenBuckets:
    """One bucket per principal in this process; the least recently created go past `max_keys`."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}

    def take(self, key: str, limit: RateLimit | None = None) -> float:
        """Take a token: 0.0 if there was one, else the seconds until one is due. `limit` is the
        principal's own, if it has one."""
        rate, burst = (self.rate, self.burst) if limit is None else (limit.per_second, limit.burst)
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                del self._buckets[next(iter(self._buckets))]
            self._buckets[key] = [burst - 1.0, now]
            return 0.0
        tokens = bucket[0] + (now - bucket[1]) * rate
        if tokens > burst:
            tokens = burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / rate


@dataclass
class SharedBucketStats:
    calls: int = 0
    failures: int = 0
    """Calls that failed or timed out; each was decided by the local bucket instead."""
    skipped: int = 0
    """Requests decided locally without asking Redis, during the back-off after a failure."""
    last_error: str | None = None


class RateLimiter:
    """Refuses a principal's request with RateLimited when its bucket is empty."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        redis_url: str | None = None,
        key_prefix: str = "churn:rl",
        timeout: float = 0.005,
        backoff_seconds: float = 1.0,
        limits: Callable[[str], RateLimit | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.local = LocalTokenBuckets(rate, burst, clock=clock)
        self.key_prefix = key_prefix
        self.backoff_seconds = backoff_seconds
        self.limits = limits
        """The rate limit of a principal that has its own (an API key's), or None."""
        self.stats = SharedBucketStats()
        self._clock = clock
        self._redis_down_until = 0.0
        self._in_outage = False
        self._redis: aioredis.Redis | None = None
        if redis_url:
            self._redis = aioredis.Redis.from_url(
                redis_url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                # A retry would double the budget; the local bucket is the fallback.
                retry_on_timeout=False,
                retry=None,
                health_check_interval=0,
            )
            self._script = self._redis.register_script(BUCKET_SCRIPT)

    @property
    def shared(self) -> bool:
        return self._redis is not None

    @property
    def window_seconds(self) -> float:
        """How long a full bucket of the default limit takes to refill from empty."""
        return self.burst / self.rate

    def limit_of(self, principal_id: str) -> RateLimit | None:
        return None if self.limits is None else self.limits(principal_id)

    def check_local(self, principal_id: str) -> None:
        limit = self.limit_of(principal_id)
        wait = self.local.take(principal_id, limit)
        if wait:
            self._refuse(wait, limit)

    async def check(self, principal_id: str) -> None:
        """Take a token from the principal's bucket, shared when Redis answers in time."""
        if self._redis is None:
            self.check_local(principal_id)
            return
        if self._clock() < self._redis_down_until:
            self.stats.skipped += 1
            self.check_local(principal_id)
            return
        limit = self.limit_of(principal_id)
        rate, burst = (self.rate, self.burst) if limit is None else (limit.per_second, limit.burst)
        self.stats.calls += 1
        try:
            reply = await self._script(
                keys=[f"{self.key_prefix}:{principal_id}"], args=[rate / 1000.0, burst]
            )
            wait = parse_bucket_reply(reply, rate)
        except Exception as error:  # fail open on any fault: redis-py raises more than RedisError
            self._redis_failed(error)
            self.check_local(principal_id)
            return
        if self._in_outage:
            self._in_outage = False
            logger.info("rate limiter: Redis answers again; buckets are shared")
        # The local bucket follows along, so that a Redis outage starts from a fair state.
        self.local.take(principal_id, limit)
        if wait:
            self._refuse(wait, limit)

    def _refuse(self, wait: float, limit: RateLimit | None) -> None:
        if limit is None:
            raise RateLimited(wait, self.burst, self.window_seconds)
        raise RateLimited(wait, limit.burst, limit.burst / limit.per_second)

    def _redis_failed(self, error: BaseException) -> None:
        self.stats.failures += 1
        self.stats.last_error = f"{type(error).__name__}: {error}"
        self._redis_down_until = self._clock() + self.backoff_seconds
        if not self._in_outage:
            self._in_outage = True
            logger.warning(
                "rate limiter: Redis unavailable (%s); buckets are per worker until it answers",
                self.stats.last_error,
            )

    async def close(self) -> None:
        if self._redis is not None:
            try:
                await self._redis.aclose()
            except Exception as error:
                # Disconnecting within the 5 ms connect budget can time out at shutdown: the
                # connections are going anyway, and a raise here failed the whole shutdown.
                logger.debug("rate limiter: closing Redis raised %r", error)
