"""The prediction cache as the API uses it: in-process L1 (no external service)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from churn_mlops.api.app import create_app
from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.features import FloatMatrix
from churn_mlops.model.inference import Probabilities
from churn_mlops.prediction.batcher import ModelRunner
from churn_mlops.settings import Settings
from tests.api.predictions.test_concurrency import running
from tests.fixtures.requests import prediction_bodies
from tests.fixtures.security import api_client

BODY = {"customer_id": "8879-ZKJOF", "features": EXAMPLE_FEATURES}


def test_a_repeated_request_is_answered_from_the_cache(client: TestClient) -> None:
    first = client.post("/predict", json=BODY).json()
    second = client.post("/predict", json=BODY).json()
    assert first["cached"] is False
    assert second["cached"] is True
    assert second["churn_probability"] == first["churn_probability"]
    stats = client.get("/cache/stats").json()
    assert stats["enabled"] is True
    assert (stats["l1"]["hits"], stats["l1"]["misses"]) == (1, 1)
    assert stats["l2"]["enabled"] is False


def test_the_same_row_under_another_customer_id_is_a_hit(client: TestClient) -> None:
    client.post("/predict", json=BODY)
    other = client.post("/predict", json={**BODY, "customer_id": "someone-else"}).json()
    assert other == {**other, "customer_id": "someone-else", "cached": True}


def test_delete_cache_empties_it(client: TestClient) -> None:
    client.post("/predict", json=BODY)
    cleared = client.delete("/cache")
    assert cleared.status_code == 200
    assert cleared.json() == {"enabled": True, "l1_removed": 1, "l2_removed": None}
    assert client.post("/predict", json=BODY).json()["cached"] is False


def test_batch_serves_hits_and_computes_only_the_misses(
    client: TestClient, dataset: TelcoDataset
) -> None:
    bodies = prediction_bodies(dataset, 6)
    for body in bodies[:3]:
        client.post("/predict", json=body)
    answers = client.post("/predict/batch", json=bodies).json()["predictions"]
    singles = [client.post("/predict", json=body).json() for body in bodies]
    assert [a["cached"] for a in answers] == [True, True, True, False, False, False]
    assert [a["churn_probability"] for a in answers] == [s["churn_probability"] for s in singles]


def test_cache_off_answers_uncached_and_says_so(
    artifact_dir: Path, artifact: ModelArtifact
) -> None:
    settings = Settings(model_dir=artifact_dir, cache_enabled=False)
    with api_client(create_app(settings, artifact)) as client:
        answers = [client.post("/predict", json=BODY).json() for _ in range(2)]
        assert [a["cached"] for a in answers] == [False, False]
        assert client.get("/cache/stats").json() == {"enabled": False}
        assert client.get("/health/ready").json()["redis"] == "disabled"


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_identical_concurrent_cold_requests_cost_one_model_row(
    artifact_dir: Path, artifact: ModelArtifact
) -> None:
    app = create_app(Settings(model_dir=artifact_dir), artifact)
    async with running(app) as client:
        batcher = app.runtime.pipeline.batcher
        rows_before = batcher.stats.rows
        answers = await asyncio.gather(*(client.post("/predict", json=BODY) for _ in range(200)))
        rows = batcher.stats.rows - rows_before
    assert rows == 1
    assert len({a.json()["churn_probability"] for a in answers}) == 1
    # Coalesced requests shared one computation; none of them was served from the cache.
    assert sum(a.json()["cached"] for a in answers) == 0


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_an_l1_hit_returns_from_its_first_step(
    artifact_dir: Path, artifact: ModelArtifact
) -> None:
    app = create_app(Settings(model_dir=artifact_dir), artifact)
    body = orjson.dumps(BODY)
    async with running(app):
        pipeline = app.runtime.pipeline
        miss = orjson.loads(await pipeline.predict_one(body))
        with pytest.raises(StopIteration) as finished:
            pipeline.predict_one(body).send(None)  # one step: no await may suspend it
    hit = orjson.loads(finished.value.value)
    assert (miss["cached"], hit) == (False, {**miss, "cached": True})


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_batch_scores_all_its_misses_in_one_model_call(
    artifact_dir: Path, artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    app = create_app(Settings(model_dir=artifact_dir), artifact)
    bodies = prediction_bodies(dataset, 8, start=3000)
    async with running(app) as client:
        for body in bodies[:3]:
            await client.post("/predict", json=body)
        runner: ModelRunner = app.runtime.pipeline.runner
        scored: list[int] = []
        score = runner.score

        def counting_score(rows: FloatMatrix) -> Probabilities:
            scored.append(len(rows))
            return score(rows)

        runner.score = counting_score
        answers = (await client.post("/predict/batch", json=bodies + bodies[5:])).json()
    assert [a["cached"] for a in answers["predictions"]] == [True] * 3 + [False] * 8
    assert scored == [5]  # the 5 distinct misses, once each, in one call
