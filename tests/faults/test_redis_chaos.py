"""Fail-open under connection faults: Redis connections reset, cut mid-reply or left half-open at
random (`ChaosProxy`) while many lookups, batches, writes, clears and stats run, in the cache and
through the real app on uvloop: no fault reaches a caller as an exception or a 5xx, every answer
is the model's, and L2 serves hits again once the faults stop."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from churn_mlops.api.app import create_app
from churn_mlops.cache import PredictionCache
from churn_mlops.data import TelcoDataset
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.inference import ChurnPredictor
from churn_mlops.settings import Settings
from tests.api.predictions.test_concurrency import running
from tests.faults.conftest import CacheFactory
from tests.fixtures.cache import cached_answers, predict, store_answers
from tests.fixtures.chaos_proxy import ChaosProxy, FaultRates
from tests.fixtures.redis_server import REDIS_HOST, REDIS_PORT
from tests.fixtures.requests import prediction_bodies

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

# Per reply chunk: about one call in eight meets a fault, one in thirty a half-open connection.
RATES = FaultRates(reset=0.03, cut=0.04, half_open=0.03, split=0.1)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"use_uvloop": True})  # as `serve` runs: uvloop's transports fail alike


@pytest.fixture
async def chaos(redis_url: str) -> AsyncIterator[ChaosProxy]:
    proxy = ChaosProxy(REDIS_HOST, REDIS_PORT, RATES, seed=16)
    await proxy.start()
    yield proxy
    await proxy.close()


def _answer(key: bytes) -> float:
    return int.from_bytes(hashlib.blake2b(key, digest_size=3).digest(), "big") / 0xFFFFFF


async def _compute(key: bytes) -> float:
    return _answer(key)


async def _for(seconds: float, work: Callable[[random.Random], Awaitable[None]], seed: int) -> None:
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await work(rng)


async def _load(
    cache: PredictionCache, keys: list[bytes], seconds: float, chaos: ChaosProxy
) -> list[bytes]:
    """Single lookups, batches, clears and stats of `cache` for `seconds`, every connection reset
    now and then; the keys answered wrongly (any exception fails the test)."""
    wrong: list[bytes] = []

    async def single(rng: random.Random) -> None:
        key = rng.choice(keys)
        value, _ = await predict(cache, key, partial(_compute, key))
        if value != _answer(key):
            wrong.append(key)

    async def batch(rng: random.Random) -> None:
        chosen = rng.sample(keys, 20)

        async def compute(indices: list[int]) -> list[float]:
            return [_answer(chosen[index]) for index in indices]

        values, _ = await cache.get_or_compute_many(chosen, compute)
        wrong.extend(k for k, v in zip(chosen, values, strict=True) if v != _answer(k))

    async def admin(rng: random.Random) -> None:
        await asyncio.sleep(0.2)
        cache.stats()
        await cache.clear()

    async def reset(rng: random.Random) -> None:
        await asyncio.sleep(rng.uniform(0.05, 0.25))
        chaos.reset_all()

    workers = [_for(seconds, single, seed) for seed in range(24)]
    workers += [_for(seconds, batch, 100 + seed) for seed in range(4)]
    workers += [_for(seconds, admin, 200), _for(seconds, reset, 300)]
    await asyncio.gather(*workers)
    return wrong


async def test_no_connection_fault_reaches_a_cache_caller(
    chaos: ChaosProxy, make_cache: CacheFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # The breaker never opens: every call meets the faults.
    cache = make_cache(chaos.url, l1_size=0, breaker_failure_threshold=1_000_000)
    keys = cache.keys.keys_for_rows(np.arange(300 * 19, dtype=np.float32).reshape(300, 19))

    with caplog.at_level(logging.ERROR, logger="churn_mlops.cache"):
        assert await _load(cache, keys, 3.0, chaos) == []
    # Connection faults are counted, never logged as errors of the client.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []

    stats = cache.stats().l2
    assert set(chaos.faults) == {"reset", "cut", "half_open", "split", "reset_all"}
    assert stats.errors > 0
    assert stats.timeouts > 0
    assert stats.hits > 0
    chaos.heal()
    for _ in range(200):
        await store_answers(cache, [(keys[0], _answer(keys[0]))])
        await cache.wait_for_writes()
        if await cached_answers(cache, keys[:1]) == [_answer(keys[0])]:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError(f"no L2 hit once the faults stopped: {cache.stats().l2}")


async def test_a_breaker_opening_and_probing_under_faults_fails_no_caller(
    chaos: ChaosProxy, make_cache: CacheFactory
) -> None:
    # Two failures open it, a probe follows 20 ms later: it opens, probes and closes throughout.
    cache = make_cache(
        chaos.url, l1_size=0, breaker_failure_threshold=2, breaker_cooldown_seconds=0.02
    )
    keys = cache.keys.keys_for_rows(np.arange(300 * 19, dtype=np.float32).reshape(300, 19))

    assert await _load(cache, keys, 2.0, chaos) == []

    stats = cache.stats().l2
    assert stats.breaker_outages > 0
    assert stats.breaker_short_circuited > 0
    assert stats.hits > 0
    start = time.perf_counter()
    await cache.close()  # with connections still half-open
    assert time.perf_counter() - start < 1.5


def _model_answers(artifact: ModelArtifact, bodies: list[dict[str, Any]]) -> dict[str, float]:
    predictor = ChurnPredictor(artifact)
    return {
        body["customer_id"]: float(
            predictor.probabilities(artifact.encoder.encode_row(body["features"]))[0]
        )
        for body in bodies
    }


async def test_connection_faults_under_load_fail_no_request(
    artifact_dir: Path,
    artifact: ModelArtifact,
    dataset: TelcoDataset,
    chaos: ChaosProxy,
    key_prefix: str,
) -> None:
    settings = Settings(
        model_dir=artifact_dir,
        redis_url=chaos.url,
        cache_key_prefix=key_prefix,
        cache_l1_size=50,  # most requests miss L1 and read Redis
        cache_l2_read_policy="always",
        cache_redis_timeout_ms=50,  # faults, not a busy machine, make the failed calls
        rate_limit_shared=False,  # the cache's faults only; the limiter's are its own tests'
        batch_max_queue_delay_ms=60_000,
    )
    bodies = prediction_bodies(dataset, 300)
    expected = _model_answers(artifact, bodies)
    statuses: Counter[tuple[str, int]] = Counter()
    wrong: list[str] = []

    async with running(create_app(settings, artifact)) as client:

        async def single(rng: random.Random) -> None:
            body = rng.choice(bodies)
            response = await client.post("/predict", json=body)
            statuses["/predict", response.status_code] += 1
            answer = response.json()
            if (
                response.status_code == 200
                and answer["churn_probability"] != expected[body["customer_id"]]
            ):
                wrong.append(body["customer_id"])

        async def batch(rng: random.Random) -> None:
            chosen = rng.sample(bodies, 20)
            response = await client.post("/predict/batch", json=chosen)
            statuses["/predict/batch", response.status_code] += 1
            if response.status_code == 200:
                for answer in response.json()["predictions"]:
                    if answer["churn_probability"] != expected[answer["customer_id"]]:
                        wrong.append(answer["customer_id"])

        async def admin(rng: random.Random) -> None:
            await asyncio.sleep(0.2)
            statuses["DELETE /cache", (await client.delete("/cache")).status_code] += 1
            statuses["/cache/stats", (await client.get("/cache/stats")).status_code] += 1

        async def outage() -> None:
            for _ in range(5):  # idle pooled connections too
                await asyncio.sleep(0.3)
                chaos.reset_all()
            chaos.rates = FaultRates(reset=1.0)  # every reply reset: the breaker opens
            await asyncio.sleep(0.3)
            chaos.rates = RATES

        workers = [_for(3.0, single, seed) for seed in range(16)]
        workers += [_for(3.0, batch, 100 + seed) for seed in range(2)]
        workers += [_for(3.0, admin, 200), outage()]
        await asyncio.gather(*workers)
        stats = (await client.get("/cache/stats")).json()["l2"]

    assert {status for _, status in statuses} == {200}, statuses
    assert statuses["/predict", 200] > 100
    assert wrong == []
    assert sum(chaos.faults.values()) > 0
    assert stats["errors"] > 0
    assert stats["hits"] > 0
    assert stats["breaker_outages"] >= 1
