"""CHURN_CACHE_SECRET: the HMAC key of L2 values, shared by default outside production, required
in production whenever the Redis cache is on, and never optional for an L2 cache."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from churn_mlops.cache import PredictionCache
from churn_mlops.settings import Settings

STRONG = "s" * 40
PRODUCTION = {"environment": "production", "jwt_secret": STRONG, "api_key_pepper": STRONG + "p"}
REDIS = "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("environment", ["development", "test"])
def test_outside_production_every_process_gets_the_same_published_secret(
    environment: str,
) -> None:
    first = Settings(environment=environment, cache_secret="")
    second = Settings(environment=environment, cache_secret="")
    assert first.cache_secret == second.cache_secret
    assert "not-for-production" in first.cache_secret.get_secret_value()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "CHURN_CACHE_SECRET is required in production"),
        ("short", "at least 32 characters"),
        ("churn-mlops-development-cache-secret-not-for-production", "not the development default"),
    ],
    ids=["missing", "short", "development-default"],
)
def test_production_with_the_redis_cache_refuses_a_missing_short_or_default_secret(
    value: str, reason: str
) -> None:
    with pytest.raises(ValidationError, match=reason):
        Settings(**PRODUCTION, redis_url=REDIS, cache_secret=value)


def test_production_with_the_redis_cache_accepts_a_strong_secret() -> None:
    settings = Settings(**PRODUCTION, redis_url=REDIS, cache_secret=STRONG + "c")
    assert settings.cache_secret.get_secret_value() == STRONG + "c"
    assert STRONG not in repr(settings)


@pytest.mark.parametrize("without_l2", [{}, {"redis_url": REDIS, "cache_enabled": False}])
def test_production_without_the_redis_cache_needs_no_secret(without_l2: dict[str, object]) -> None:
    assert Settings(**PRODUCTION, **without_l2).cache_secret.get_secret_value() == ""


@pytest.mark.parametrize("secret", [None, b""])
def test_an_l2_cache_needs_a_secret(secret: bytes | None) -> None:
    with pytest.raises(ValueError, match="secret"):
        PredictionCache("v1", l2_url=REDIS, secret=secret)
