"""Reason codes when a canary answers some customers: each answer is explained by the model that
answered it, and a canary model without explanation data refuses before scoring."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from churn_mlops.core.errors import Conflict
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.lifecycle.served import build_pipeline
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.prediction.challenger import CanarySplit, Challenger
from churn_mlops.prediction.pipeline import PredictionPipeline
from churn_mlops.settings import Settings

pytestmark = pytest.mark.anyio


def _pipelines(
    artifact: ModelArtifact, canary_artifact: ModelArtifact, artifact_dir: Path
) -> PredictionPipeline:
    settings = Settings(
        model_dir=artifact_dir,
        environment="test",
        auth_enabled=False,
        database_url="",
        cache_enabled=False,
        batcher_enabled=False,
    )
    champion = build_pipeline(artifact, settings)
    canary = build_pipeline(canary_artifact, settings)
    champion.challenger = Challenger(
        canary_artifact.version, "canary", canary=CanarySplit(100.0), pipeline=canary
    )
    return champion


async def test_each_answer_is_explained_by_the_model_that_answered_it(
    artifact: ModelArtifact, other_artifact_dir: Path, artifact_dir: Path
) -> None:
    other = ModelArtifact.load(other_artifact_dir)
    champion = _pipelines(artifact, other, artifact_dir)
    body = [
        {"customer_id": "taken-by-the-canary", "features": EXAMPLE_FEATURES, "explain": True},
        {"features": EXAMPLE_FEATURES, "explain": True},  # no id: the champion's
        {"customer_id": "not-explained", "features": EXAMPLE_FEATURES},
    ]

    answers = orjson.loads(await champion.predict_many(orjson.dumps(body)))["predictions"]
    single = orjson.loads(await champion.predict_one(orjson.dumps(body[0])))

    assert [a["model_version"] for a in answers] == [other.version, artifact.version, other.version]
    assert ["reasons" in a for a in answers] == [True, True, False]
    assert single["model_version"] == other.version
    assert single["reasons"] == answers[0]["reasons"]
    # The same trees (another threshold): the same reasons from either model.
    assert answers[0]["reasons"] == answers[1]["reasons"]
    await champion.close()


async def test_a_canary_without_explanation_data_refuses_before_scoring(
    artifact: ModelArtifact, other_artifact_dir: Path, artifact_dir: Path
) -> None:
    older = replace(ModelArtifact.load(other_artifact_dir), explainer_bytes=None)
    champion = _pipelines(artifact, older, artifact_dir)
    taken = {"customer_id": "taken-by-the-canary", "features": EXAMPLE_FEATURES}

    with pytest.raises(Conflict, match="no explanation data"):
        await champion.predict_many(orjson.dumps([{**taken, "explain": True}]))
    with pytest.raises(Conflict, match="no explanation data"):
        await champion.predict_one(orjson.dumps({**taken, "explain": True}))
    answered = orjson.loads(await champion.predict_one(orjson.dumps(taken)))
    assert answered["model_version"] == older.version
    await champion.close()
