"""Prediction cache: an in-process LRU (L1), Redis (L2), key derivation and the value codec."""

from churn_mlops.cache.breaker import BreakerState, BreakerStats, CircuitBreaker
from churn_mlops.cache.codec import ValueCodec
from churn_mlops.cache.keys import PredictionKeys, canonical_rows
from churn_mlops.cache.memory import LruTtlCache
from churn_mlops.cache.redis_store import RedisStore, RedisStoreStats
from churn_mlops.cache.stats import CacheStats, ClearResult, L1Stats, L2Stats
from churn_mlops.cache.tiered import PredictionCache

__all__ = [
    "BreakerState",
    "BreakerStats",
    "CacheStats",
    "CircuitBreaker",
    "ClearResult",
    "L1Stats",
    "L2Stats",
    "LruTtlCache",
    "PredictionCache",
    "PredictionKeys",
    "RedisStore",
    "RedisStoreStats",
    "ValueCodec",
    "canonical_rows",
]
