"""The prediction pipeline tells its recorder about every answered prediction, and only those."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from churn_mlops.core.errors import ServiceError
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.prediction.pipeline import PredictionPipeline
from churn_mlops.runtime import build_pipeline
from churn_mlops.settings import Settings

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


class ListRecorder:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def record(
        self,
        customer_id: str | None,
        probability: float,
        will_churn: bool,
        cached: bool,
        latency_ms: float,
        model_version: str,
    ) -> None:
        self.rows.append((customer_id, probability, will_churn, cached, latency_ms, model_version))

    def record_many(
        self,
        customer_ids: Sequence[str | None],
        probabilities: Sequence[float],
        will_churn: Sequence[bool],
        cached: Sequence[bool],
        latency_ms: float,
        model_version: str,
    ) -> None:
        for row in zip(customer_ids, probabilities, will_churn, cached, strict=True):
            self.rows.append((*row, latency_ms, model_version))


@pytest.fixture
def recorder() -> ListRecorder:
    return ListRecorder()


@pytest.fixture
async def pipeline(artifact_dir: Path, artifact: ModelArtifact, recorder: ListRecorder) -> Any:
    settings = Settings(model_dir=artifact_dir, environment="test", max_batch_rows=50)
    built = build_pipeline(artifact, settings, recorder=recorder)
    yield built
    await built.close()


def _logged(answer: dict[str, Any]) -> tuple[Any, ...]:
    return (answer["customer_id"], answer["churn_probability"], answer["will_churn"])


async def test_predict_one_records_its_answer(
    pipeline: PredictionPipeline, recorder: ListRecorder
) -> None:
    body = orjson.dumps({"customer_id": "c-1", "features": EXAMPLE_FEATURES})
    first = orjson.loads(await pipeline.predict_one(body))
    second = orjson.loads(await pipeline.predict_one(body))
    assert [row[:3] for row in recorder.rows] == [_logged(first), _logged(second)]
    assert [row[3] for row in recorder.rows] == [False, True]  # the repeat is a cache hit
    assert {row[5] for row in recorder.rows} == {first["model_version"]}
    assert all(row[4] > 0 for row in recorder.rows)


async def test_predict_many_records_one_row_per_answer(
    pipeline: PredictionPipeline, recorder: ListRecorder
) -> None:
    items = [{"customer_id": f"b-{n}", "features": EXAMPLE_FEATURES} for n in range(3)]
    items.append({"customer_id": None, "features": {**EXAMPLE_FEATURES, "tenure": 2}})
    answers = orjson.loads(await pipeline.predict_many(orjson.dumps(items)))["predictions"]
    assert [row[:4] for row in recorder.rows] == [
        (*_logged(answer), answer["cached"]) for answer in answers
    ]
    assert len({row[4] for row in recorder.rows}) == 1  # the request's latency, once


async def test_predict_features_records_the_stored_customer(
    pipeline: PredictionPipeline, recorder: ListRecorder
) -> None:
    answer = orjson.loads(await pipeline.predict_features("stored-7", dict(EXAMPLE_FEATURES)))
    assert [row[:3] for row in recorder.rows] == [_logged(answer)]


async def test_a_refused_request_records_nothing(
    pipeline: PredictionPipeline, recorder: ListRecorder
) -> None:
    with pytest.raises(ServiceError):
        await pipeline.predict_one(b'{"features": {"tenure": 500}}')
    with pytest.raises(ServiceError):
        await pipeline.predict_many(b"[1, 2]")
    assert recorder.rows == []
