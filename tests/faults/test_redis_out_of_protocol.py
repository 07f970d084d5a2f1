"""Fail-open against replies Redis never gives: a server (or a proxy, or a connection out of step)
that answers MGET with an integer, a list of another length or of other things costs the cache
its lookups, counted as failed calls, and never a prediction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from churn_mlops.api.app import create_app
from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.inference import ChurnPredictor
from churn_mlops.settings import Settings
from tests.api.predictions.test_concurrency import running
from tests.fixtures.fake_redis import Answer, FakeRedis, resp_ok
from tests.fixtures.requests import prediction_bodies

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def _array(items: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(items) + b"".join(items)


# Each answers an MGET of n keys (n = the words after MGET) with what MGET never answers.
MGET_REPLIES: dict[str, Callable[[int], bytes]] = {
    "integer": lambda n: b":1\r\n",
    "status": lambda n: b"+OK\r\n",
    "short-list": lambda n: _array([b"$-1\r\n"] * (n - 1)),
    "long-list": lambda n: _array([b"$-1\r\n"] * (n + 1)),
    "integers-inside": lambda n: _array([b":5\r\n"] * n),
    "lists-inside": lambda n: _array([b"*1\r\n$3\r\nabc\r\n"] * n),
}


def _server(name: str) -> Answer:
    def answer(command: list[bytes]) -> bytes:
        if command[0].upper() == b"MGET":
            return MGET_REPLIES[name](len(command) - 1)
        return resp_ok(command)

    return answer


@pytest.fixture(params=list(MGET_REPLIES))
async def fake_redis(request: pytest.FixtureRequest) -> AsyncIterator[FakeRedis]:
    server = FakeRedis(_server(request.param))
    await server.start()
    yield server
    await server.close()


def _model_answer(artifact: ModelArtifact, features: dict[str, Any]) -> float:
    return float(ChurnPredictor(artifact).probabilities(artifact.encoder.encode_row(features))[0])


async def test_a_reply_mget_never_gives_fails_no_prediction(
    artifact_dir: Path, artifact: ModelArtifact, dataset: TelcoDataset, fake_redis: FakeRedis
) -> None:
    settings = Settings(
        model_dir=artifact_dir,
        redis_url=fake_redis.url,
        cache_l1_size=0,  # every request reads Redis
        cache_l2_read_policy="always",
        cache_redis_timeout_ms=1000,  # a busy machine must not make it a timeout instead
    )
    bodies = prediction_bodies(dataset, 3)
    async with running(create_app(settings, artifact)) as client:
        single = await client.post("/predict", json={"features": EXAMPLE_FEATURES})
        batch = await client.post("/predict/batch", json=bodies)
        cleared = await client.delete("/cache")
        stats = (await client.get("/cache/stats")).json()["l2"]
    assert [single.status_code, batch.status_code, cleared.status_code] == [200, 200, 200]
    assert single.json()["churn_probability"] == _model_answer(artifact, EXAMPLE_FEATURES)
    assert single.json()["cached"] is False
    assert [answer["churn_probability"] for answer in batch.json()["predictions"]] == [
        _model_answer(artifact, body["features"]) for body in bodies
    ]
    assert sum(command[0].upper() == b"MGET" for command in fake_redis.commands) == 2
    assert stats["errors"] >= 2
    assert "UnexpectedReply: MGET" in stats["last_error"]
    assert (stats["hits"], stats["unavailable"]) == (0, 4)
