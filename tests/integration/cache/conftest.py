from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis

from churn_mlops.cache.tiered import PredictionCache
from tests.fixtures.redis_server import keys_removed_after, require_redis, unique_prefix

CacheFactory = Callable[..., PredictionCache]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def redis_url() -> str:
    return require_redis()


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    prefix = unique_prefix()
    with keys_removed_after(redis_url, prefix):
        yield prefix


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client for planting and inspecting values behind the cache's back."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture
async def make_cache(redis_url: str, key_prefix: str) -> AsyncIterator[CacheFactory]:
    """Builds caches on the test's own key prefix (each one like another worker) and closes
    them. Timeouts are generous: these tests check behaviour, on a machine that may be busy."""
    caches: list[PredictionCache] = []

    def make(model_version: str = "v1", **options: Any) -> PredictionCache:
        settings: dict[str, Any] = {
            "key_prefix": key_prefix,
            "l2_url": redis_url,
            "l2_read_timeout": 2.0,
            "l2_write_timeout": 2.0,
        }
        settings.update(options)
        cache = PredictionCache(model_version, **settings)
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        await cache.close()
