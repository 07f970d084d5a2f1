from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from churn_mlops.cache import PredictionCache
from tests.fixtures.cache_values import TEST_CACHE_SECRET

CacheFactory = Callable[..., PredictionCache]


@pytest.fixture
async def make_cache(redis_url: str, key_prefix: str) -> AsyncIterator[CacheFactory]:
    """Builds caches on the test's own key prefix (each one like another worker) and closes
    them. Timeouts are generous: these tests check behaviour, on a machine that may be busy."""
    caches: list[PredictionCache] = []

    def make(model_version: str = "v1", **options: Any) -> PredictionCache:
        settings: dict[str, Any] = {
            "key_prefix": key_prefix,
            "l2_url": redis_url,
            "secret": TEST_CACHE_SECRET,
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
