"""The API with Redis as the shared L2 cache: the real Redis on 127.0.0.1:6379."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import redis

from benchmarks.servers import free_port
from churn_mlops.api.app import create_app
from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings
from tests.api.predictions.test_concurrency import running
from tests.fixtures.cache_values import float_bytes, untagged
from tests.fixtures.requests import prediction_bodies

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

BODY = {"customer_id": "8879-ZKJOF", "features": EXAMPLE_FEATURES}
# What these tests check does not depend on Redis' latency: a loaded machine's Redis answers
# past the service's 5 ms budget (the read then counts as a miss), so they give it a second.
PATIENT = {"cache_redis_timeout_ms": 1000.0}


async def test_a_second_worker_is_served_from_redis(
    artifact_dir: Path, artifact: ModelArtifact, redis_url: str, key_prefix: str
) -> None:
    url, prefix = redis_url, key_prefix
    settings = Settings(model_dir=artifact_dir, redis_url=url, cache_key_prefix=prefix, **PATIENT)
    first = create_app(settings, artifact)
    async with running(first) as first_worker:
        computed = (await first_worker.post("/predict", json=BODY)).json()
        await first.runtime.pipeline.cache.wait_for_writes()
    async with running(create_app(settings, artifact)) as second_worker:
        shared = (await second_worker.post("/predict", json=BODY)).json()
        stats = (await second_worker.get("/cache/stats")).json()
        ready = (await second_worker.get("/health/ready")).json()
    assert computed["cached"] is False
    assert shared == {**computed, "cached": True}
    assert stats["l2"]["hits"] == 1
    assert ready["redis"] == "ok"


async def test_redis_down_degrades_the_cache_never_the_predictions(
    artifact_dir: Path, artifact: ModelArtifact
) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there: connections refused
    settings = Settings(model_dir=artifact_dir, redis_url=nobody, cache_l1_size=0)
    async with running(create_app(settings, artifact)) as client:
        answers = [await client.post("/predict", json=BODY) for _ in range(8)]
        ready = await client.get("/health/ready")
        stats = (await client.get("/cache/stats")).json()
    assert [a.status_code for a in answers] == [200] * 8
    assert len({a.json()["churn_probability"] for a in answers}) == 1
    assert ready.status_code == 200
    assert ready.json()["redis"] == "degraded"
    assert stats["l2"]["breaker_state"] == "open"


async def test_delete_cache_clears_redis_for_this_model_only(
    artifact_dir: Path, artifact: ModelArtifact, redis_url: str, key_prefix: str
) -> None:
    url, prefix = redis_url, key_prefix
    settings = Settings(model_dir=artifact_dir, redis_url=url, cache_key_prefix=prefix, **PATIENT)
    app = create_app(settings, artifact)
    async with running(app) as client:
        await client.post("/predict", json=BODY)
        await app.runtime.pipeline.cache.wait_for_writes()
        cleared = (await client.delete("/cache")).json()
        again = (await client.post("/predict", json=BODY)).json()
    assert cleared == {"enabled": True, "l1_removed": 1, "l2_removed": 1}
    assert again["cached"] is False


async def test_misses_skip_unpaying_redis_reads_and_another_worker_still_gets_the_answers(
    artifact_dir: Path,
    artifact: ModelArtifact,
    dataset: TelcoDataset,
    redis_url: str,
    key_prefix: str,
) -> None:
    bodies = prediction_bodies(dataset, 100, start=2000)
    settings = Settings(
        model_dir=artifact_dir, redis_url=redis_url, cache_key_prefix=key_prefix, **PATIENT
    )
    first = create_app(settings, artifact)
    async with running(first) as first_worker:
        computed = [(await first_worker.post("/predict", json=b)).json() for b in bodies]
        await first.runtime.pipeline.cache.wait_for_writes()
        first_stats = (await first_worker.get("/cache/stats")).json()["l2"]
    # New customers never hit Redis, and the forest scores a row faster than Redis answers.
    assert first_stats["read_policy"] == "adaptive"
    assert first_stats["skipped_reads"] > 0
    assert first_stats["misses"] == len(bodies) - first_stats["skipped_reads"]
    assert first_stats["written"] == len(bodies)

    always = settings.model_copy(update={"cache_l2_read_policy": "always"})
    async with running(create_app(always, artifact)) as second_worker:
        shared = [(await second_worker.post("/predict", json=b)).json() for b in bodies]
        second_stats = (await second_worker.get("/cache/stats")).json()["l2"]
    assert shared == [{**answer, "cached": True} for answer in computed]
    assert (second_stats["read_policy"], second_stats["hits"]) == ("always", len(bodies))


@pytest.mark.parametrize(
    "forged",
    [
        lambda version, name: orjson.dumps({"p": 0.987654321, "v": version, "k": name[-32:]}),
        lambda version, name: orjson.dumps({"p": -0.0, "v": version, "k": name[-32:]}),
        lambda version, name: untagged(float_bytes(0.987654321)),
    ],
    ids=["json-of-the-right-shape", "json-negative-zero", "made-up-tag"],
)
async def test_a_value_planted_under_the_services_key_is_never_served(
    artifact_dir: Path,
    artifact: ModelArtifact,
    redis_url: str,
    key_prefix: str,
    raw_redis: redis.Redis,
    forged: Callable[[str, str], bytes],
) -> None:
    settings = Settings(
        model_dir=artifact_dir,
        redis_url=redis_url,
        cache_key_prefix=key_prefix,
        cache_l2_read_policy="always",
        **PATIENT,
    )
    first = create_app(settings, artifact)
    async with running(first) as first_worker:
        computed = (await first_worker.post("/predict", json=BODY)).json()
        await first.runtime.pipeline.cache.wait_for_writes()
    [name] = raw_redis.keys(f"{key_prefix}:*")
    raw_redis.set(name, forged(artifact.version, name.decode()))
    second = create_app(settings, artifact)
    async with running(second) as second_worker:
        answered = (await second_worker.post("/predict", json=BODY)).json()
        stats = (await second_worker.get("/cache/stats")).json()["l2"]
        metrics = (await second_worker.get("/metrics")).text
        await second.runtime.pipeline.cache.wait_for_writes()
    assert answered == computed  # the model's answer, "cached": false
    assert (stats["hits"], stats["corrupt"]) == (0, 1)
    assert "\nchurn_cache_rejected_total 1.0\n" in metrics
    assert raw_redis.get(name) != forged(artifact.version, name.decode())  # overwritten
