from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from churn_mlops.cache import PredictionCache
from tests.fixtures.cache_values import TEST_CACHE_SECRET
from tests.fixtures.redis_server import (
    REDIS_HOST,
    REDIS_PORT,
)
from tests.fixtures.tcp_proxy import TcpProxy

CacheFactory = Callable[..., PredictionCache]

# Small enough that a fault costs each lookup little, large enough that a busy machine does not
# time out a healthy Redis; latency assertions use a far larger bound (1 s).
READ_TIMEOUT = 0.05
WRITE_TIMEOUT = 0.05
COOLDOWN = 0.3


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of the machine's Redis, passing traffic until told otherwise."""
    tcp_proxy = TcpProxy(REDIS_HOST, REDIS_PORT)
    await tcp_proxy.start()
    yield tcp_proxy
    await tcp_proxy.close()


@pytest.fixture
async def make_cache(key_prefix: str) -> AsyncIterator[CacheFactory]:
    """Builds caches on the test's key prefix; pass `l2_url` (the proxy's or Redis's)."""
    caches: list[PredictionCache] = []

    def make(l2_url: str, model_version: str = "v1", **options: Any) -> PredictionCache:
        settings: dict[str, Any] = {
            "key_prefix": key_prefix,
            "l2_url": l2_url,
            "secret": TEST_CACHE_SECRET,
            "l2_read_timeout": READ_TIMEOUT,
            "l2_write_timeout": WRITE_TIMEOUT,
            "breaker_failure_threshold": 3,
            "breaker_cooldown_seconds": COOLDOWN,
            # These tests are about faults: every miss reads Redis, whatever the reads pay.
            "l2_read_policy": "always",
        }
        settings.update(options)
        cache = PredictionCache(model_version, **settings)
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        await cache.close()
