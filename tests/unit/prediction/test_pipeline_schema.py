"""A pipeline is built from its model's feature schema: it exposes that schema, and warms up
with the schema's example (the first customer of the training data)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from churn_mlops.core.schema import FeatureSchema, FeatureSpec, TargetSpec, example_features
from churn_mlops.lifecycle.served import build_pipeline
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings

pytestmark = pytest.mark.anyio


async def test_the_pipeline_has_its_models_schema_and_warms_up_with_its_example(
    own_artifact_dir: Path, own_artifact: ModelArtifact
) -> None:
    settings = Settings(model_dir=own_artifact_dir, environment="test", max_batch_rows=50)
    pipeline = build_pipeline(own_artifact, settings)
    try:
        assert pipeline.schema == own_artifact.schema
        assert pipeline.decoder.names == own_artifact.encoder.feature_names
        assert orjson.loads(pipeline.example_body) == {
            "features": dict(own_artifact.schema.example)
        }
        pipeline.warm_up()  # a Telco body would be refused (422) by this model's decoder
        answer = orjson.loads(await pipeline.predict_one(pipeline.example_body))
        assert answer["model_version"] == own_artifact.version
    finally:
        await pipeline.close()


def test_a_schema_without_an_example_gets_one_made_from_its_specs() -> None:
    schema = FeatureSchema(
        features=(
            FeatureSpec("tier", "categorical", "Tier", values=("gold", "silver")),
            FeatureSpec("seats", "integer", "Seats", minimum=1, maximum=9),
            FeatureSpec("debt", "number", "Debt", maximum=-5.0),
            FeatureSpec("active", "boolean", "Active"),
            FeatureSpec("score", "number", "Score"),
        ),
        target=TargetSpec("churned"),
    )
    assert example_features(schema) == {
        "tier": "gold",
        "seats": 1,
        "debt": -5.0,
        "active": False,
        "score": 0,
    }
