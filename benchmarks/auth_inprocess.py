"""What authentication costs one request in process, without HTTP around it: the guard of the
raw `/predict` path alone, and the whole app (raw ASGI `POST /predict`), each with
authentication on and off, through `benchmarks.inprocess`."""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path
from typing import Any

import orjson

from benchmarks.inprocess import (
    WALL_CLOCK,
    Variant,
    interleaved_blocks,
    predict_variant,
    serving_all,
)
from churn_mlops.api.app import create_app
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.security.authenticator import Authenticator, MemoryKeySource
from churn_mlops.security.guard import RequestGuard
from churn_mlops.security.principal import Scope
from churn_mlops.security.ratelimit import RateLimiter
from churn_mlops.security.tokens import TokenService
from churn_mlops.settings import Settings

GUARD_BLOCKS = 5
GUARD_CALLS = 200_000
APP_BLOCKS = 6
APP_REQUESTS = 5_000
# Limits no load reaches: the bucket is checked on every request, and never refuses one.
UNREACHED_RATE = 1e12
UNREACHED_BURST = 10**12


def guard_cost_us(calls: int = GUARD_CALLS, blocks: int = GUARD_BLOCKS) -> dict[str, float]:
    """Microseconds per request the raw `/predict` path's guard costs with a cached key, and
    the same loop with authentication off; medians over the blocks."""
    pepper = b"p" * 40
    tokens = TokenService("s" * 40, issuer="i", audience="a", ttl_seconds=60)
    authenticator = Authenticator(tokens, pepper, cache_ttl=3600)
    keys = MemoryKeySource(pepper)
    key = keys.add("bench", [Scope.PREDICT])
    authenticator.keys = keys
    scope: dict[str, Any] = {
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"x-api-key", key.encode()),
            (b"content-length", b"612"),
        ]
    }
    guards = {
        "auth-on": RequestGuard(
            authenticator, RateLimiter(UNREACHED_RATE, UNREACHED_BURST), Scope.PREDICT
        ),
        "auth-off": RequestGuard(None, None, Scope.PREDICT),
    }
    variants = [Variant(name, guard.admit) for name, guard in guards.items()]
    # The first call verifies the key; the timed ones find it in the cache.
    figures = asyncio.run(
        interleaved_blocks(variants, [scope] * calls, blocks, warmup=[scope], clock=WALL_CLOCK)
    )
    return {name: statistics.median(values) for name, values in figures.items()}


def app_cost_us(
    model_dir: Path, requests: int = APP_REQUESTS, blocks: int = APP_BLOCKS
) -> dict[str, float]:
    """Microseconds per `POST /predict` through the whole app in process (the fast path, the
    pipeline, the micro-batcher, the model; no HTTP), authentication on and off in blocks that
    take turns; the medians."""
    body = orjson.dumps({"customer_id": "8879-ZKJOF", "features": EXAMPLE_FEATURES})
    settings = Settings(
        model_dir=model_dir,
        environment="test",
        database_url="",
        cache_enabled=False,
        prediction_log_enabled=False,
        rate_limit_per_second=UNREACHED_RATE,
        rate_limit_burst=UNREACHED_BURST,
    )
    keys = MemoryKeySource(settings.api_key_pepper.get_secret_value().encode())
    key = keys.add("bench", [Scope.PREDICT])
    apps = {
        "auth-on": create_app(settings),
        "auth-off": create_app(settings.model_copy(update={"auth_enabled": False})),
    }
    apps["auth-on"].use_keys(keys)

    async def drive() -> dict[str, list[float]]:
        headers = {"auth-on": [(b"x-api-key", key.encode())]}
        async with serving_all(apps, headers) as running:
            variants = [predict_variant(name, app) for name, app in running.items()]
            warmup = [body] * (requests // 10)
            return await interleaved_blocks(
                variants, [body] * requests, blocks, warmup=warmup, clock=WALL_CLOCK
            )

    figures = asyncio.run(drive())
    return {name: statistics.median(values) for name, values in figures.items()}
