"""The app under real concurrency: many requests in flight on one event loop."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from churn_mlops.api.app import ChurnAPI, create_app
from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.inference import ChurnPredictor
from churn_mlops.settings import Settings
from tests.fixtures.lifespan import in_process_client
from tests.fixtures.requests import JSON_HEADERS, prediction_bodies
from tests.fixtures.security import api_key_headers

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@asynccontextmanager
async def running(app: ChurnAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_client(app) as client:
        client.headers.update(api_key_headers(app))
        yield client


def _expected(artifact: ModelArtifact, body: dict[str, Any]) -> float:
    row = artifact.encoder.encode_row(body["features"])
    return float(ChurnPredictor(artifact).probabilities(row)[0])


async def test_concurrent_predictions_share_model_calls_and_match_their_inputs(
    artifact_dir: Path, artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    # httpx's in-process transport starts all 200 requests in one event-loop turn, which on a
    # busy machine lasts past the batcher's default shedding bound (50 ms); this test is about
    # sharing model calls, not shedding.
    settings = Settings(model_dir=artifact_dir, batch_max_queue_delay_ms=60_000)
    app = create_app(settings, artifact)
    bodies = prediction_bodies(dataset, 200, start=1000)
    async with running(app) as client:
        calls_before = app.runtime.pipeline.batcher.stats.model_calls
        responses = await asyncio.gather(*(client.post("/predict", json=b) for b in bodies))
        calls = app.runtime.pipeline.batcher.stats.model_calls - calls_before
    assert calls <= math.ceil(len(bodies) / 32) + 1
    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200
        answer = response.json()
        assert answer["customer_id"] == body["customer_id"]
        assert answer["churn_probability"] == pytest.approx(_expected(artifact, body), abs=1e-12)


async def test_full_queue_answers_503_with_retry_after_and_shutdown_answers_the_rest(
    artifact_dir: Path, artifact: ModelArtifact
) -> None:
    settings = Settings(
        model_dir=artifact_dir,
        batch_max_wait_ms=60_000,
        batch_max_size=100,
        batch_max_queue=2,
        cache_enabled=False,  # identical requests would share one computation in the cache
    )
    app = create_app(settings, artifact)
    body = {"features": EXAMPLE_FEATURES}
    async with running(app) as client:
        waiting = [asyncio.ensure_future(client.post("/predict", json=body)) for _ in range(2)]
        while app.runtime.pipeline.batcher.queued < 2:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.001)
        refused = await client.post("/predict", json=body)
    answered = await asyncio.gather(*waiting)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json() == {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "Too many predictions are waiting; retry shortly.",
    }
    assert [r.status_code for r in answered] == [200, 200]


async def test_batcher_off_answers_each_request_alone(
    artifact_dir: Path, artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    app = create_app(Settings(model_dir=artifact_dir, batcher_enabled=False), artifact)
    bodies = prediction_bodies(dataset, 20)
    async with running(app) as client:
        assert app.runtime.pipeline.batcher is None
        responses = await asyncio.gather(*(client.post("/predict", json=b) for b in bodies))
    for body, response in zip(bodies, responses, strict=True):
        assert response.json()["churn_probability"] == pytest.approx(
            _expected(artifact, body), abs=1e-12
        )


@pytest.mark.parametrize(
    "content", [b'{"features": {}}', b"[", b'{"features": ' + b"1" * 10 + b"}"]
)
async def test_fast_path_and_fastapi_route_answer_identically(
    artifact_dir: Path, artifact: ModelArtifact, content: bytes
) -> None:
    answers = []
    for fast_path in (True, False):
        settings = Settings(model_dir=artifact_dir, fast_predict_enabled=fast_path)
        async with running(create_app(settings, artifact)) as client:
            good = await client.post("/predict", json={"features": EXAMPLE_FEATURES})
            bad = await client.post("/predict", content=content, headers=JSON_HEADERS)
        answers.append((good.status_code, good.json(), bad.status_code, bad.json()))
        assert "x-process-time" in good.headers
        assert bad.headers["content-type"] == "application/problem+json"
    assert answers[0] == answers[1]
