"""With `CHURN_LOG_FEATURES` the recorder gets each scored row's encoded features (single,
batch, stored customer, a canary's share, the shadow's records); without it, none."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from churn_mlops.data.telco_example import EXAMPLE_FEATURES, FEATURE_NAMES
from churn_mlops.db.prediction_log.features import decode_rows
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.prediction.challenger import CanarySplit, Challenger, ShadowScorer
from churn_mlops.prediction.pipeline import PredictionPipeline
from churn_mlops.runtime import build_pipeline
from churn_mlops.settings import Settings

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


class FeatureRecorder:
    """Keeps (customer id, model version, features) of every recorded answer."""

    def __init__(self) -> None:
        self.rows: list[tuple[str | None, str, bytes | None]] = []

    def record(self, customer_id: str | None, *answer: Any, features: Any = None) -> None:
        # Positional from the shadow (9th value), keyword from the pipeline.
        if len(answer) > 7:
            features = answer[7]
        self.rows.append((customer_id, answer[4], features))

    def record_many(self, customer_ids: Sequence[str | None], *answer: Any, **kw: Any) -> None:
        features = kw.get("features", answer[7] if len(answer) > 7 else None)
        blobs = features if features is not None else [None] * len(customer_ids)
        self.rows.extend(
            (customer, answer[4], blob) for customer, blob in zip(customer_ids, blobs, strict=True)
        )


def _pipeline(artifact: ModelArtifact, artifact_dir: Path, recorder: Any, **kw: Any) -> Any:
    settings = Settings(model_dir=artifact_dir, environment="test", **kw)
    return build_pipeline(artifact, settings, recorder=recorder)


@pytest.fixture
async def logging_pipeline(
    artifact: ModelArtifact, artifact_dir: Path
) -> AsyncIterator[tuple[PredictionPipeline, FeatureRecorder]]:
    recorder = FeatureRecorder()
    pipeline = _pipeline(artifact, artifact_dir, recorder, log_features=True)
    yield pipeline, recorder
    await pipeline.close()


def _bodies(count: int) -> list[dict[str, Any]]:
    return [
        {"customer_id": f"c-{n}", "features": {**EXAMPLE_FEATURES, "tenure": n + 1}}
        for n in range(count)
    ]


def _decoded(recorder: FeatureRecorder) -> np.ndarray:
    blobs = [blob for _, _, blob in recorder.rows]
    assert all(blob is not None for blob in blobs)
    return decode_rows([blob for blob in blobs if blob is not None], len(FEATURE_NAMES))


def _encoded(artifact: ModelArtifact, bodies: list[dict[str, Any]]) -> np.ndarray:
    return np.concatenate([artifact.encoder.encode_row(body["features"]) for body in bodies])


async def test_single_batch_and_stored_predictions_carry_their_rows(
    logging_pipeline: tuple[PredictionPipeline, FeatureRecorder], artifact: ModelArtifact
) -> None:
    pipeline, recorder = logging_pipeline
    bodies = _bodies(6)
    await pipeline.predict_one(orjson.dumps(bodies[0]))
    await pipeline.predict_one(orjson.dumps(bodies[0]))  # a cache hit is logged with its row
    await pipeline.predict_many(orjson.dumps(bodies[1:5]))
    await pipeline.predict_features("c-5", bodies[5]["features"])
    expected = _encoded(artifact, [bodies[0], *bodies])
    np.testing.assert_array_equal(_decoded(recorder), expected)


async def test_without_the_setting_nothing_is_passed(
    artifact: ModelArtifact, artifact_dir: Path
) -> None:
    recorder = FeatureRecorder()
    pipeline = _pipeline(artifact, artifact_dir, recorder)
    try:
        await pipeline.predict_one(orjson.dumps(_bodies(1)[0]))
        await pipeline.predict_many(orjson.dumps(_bodies(3)))
    finally:
        await pipeline.close()
    assert [blob for _, _, blob in recorder.rows] == [None] * 4


async def test_a_canary_share_logs_its_rows_under_its_version(
    logging_pipeline: tuple[PredictionPipeline, FeatureRecorder],
    artifact: ModelArtifact,
    artifact_dir: Path,
) -> None:
    champion, recorder = logging_pipeline
    canary = _pipeline(artifact, artifact_dir, recorder, log_features=True)
    champion.challenger = Challenger("canary", "canary", canary=CanarySplit(50.0), pipeline=canary)
    try:
        bodies = _bodies(40)
        await champion.predict_many(orjson.dumps(bodies))
    finally:
        await canary.close()
    by_customer = {customer: blob for customer, _, blob in recorder.rows}
    assert sorted(by_customer) == sorted(body["customer_id"] for body in bodies)
    decoded = decode_rows([by_customer[body["customer_id"]] or b"" for body in bodies], 19)
    np.testing.assert_array_equal(decoded, _encoded(artifact, bodies))


async def test_the_shadow_records_the_rows_it_scored(artifact: ModelArtifact) -> None:
    recorder = FeatureRecorder()
    shadow = ShadowScorer(lambda rows: rows[:, 0] * 0, "v-shadow", recorder, log_features=True)
    bodies = _bodies(5)
    rows = _encoded(artifact, bodies)
    shadow.add(rows[:1], "c-0", 0.5, True, False, 1.0, "v-champion")
    shadow.add_many(rows[1:], ["c-1", "c-2", "c-3", "c-4"], [0.5] * 4, [True] * 4, [False] * 4,
                    1.0, "v-champion")  # fmt: skip
    await asyncio.sleep(0)
    np.testing.assert_array_equal(_decoded(recorder), rows)
