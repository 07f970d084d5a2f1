"""Canary mode: the challenger answers the customers whose hashed id falls in its share, the
same ones every time, single and batch, and the cache never mixes the two versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from churn_mlops.api.app import create_app
from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.registry import CHALLENGER, LocalRegistry
from churn_mlops.prediction.challenger import canary_bucket
from churn_mlops.settings import Settings
from tests.fixtures.lifespan import in_process_client
from tests.fixtures.requests import prediction_bodies
from tests.fixtures.security import api_key_headers

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]  # trains a challenger once per session


async def test_canary_answers_its_share_of_customers_and_only_those(
    registry_settings: Settings,
    registry: LocalRegistry,
    artifact: ModelArtifact,
    challenger_artifact_dir: Path,
    dataset: TelcoDataset,
) -> None:
    challenger = registry.register(challenger_artifact_dir)
    registry.promote(challenger.version, CHALLENGER)
    challenger_model = ModelArtifact.load(challenger.path)
    settings = registry_settings.model_copy(
        update={"challenger_mode": "canary", "canary_percent": 50.0}
    )
    bodies = prediction_bodies(dataset, 40)
    encoded = artifact.encoder.encode_columns(dataset.subset(range(40)).columns)
    by_version = {
        artifact.version: artifact.forest.predict(encoded),
        challenger.version: challenger_model.forest.predict(encoded),
    }
    expected = [
        challenger.version if canary_bucket(b["customer_id"]) < 5_000 else artifact.version
        for b in bodies
    ]
    assert len(set(expected)) == 2  # both models get some of these customers

    app = create_app(settings)
    async with in_process_client(app, api_key_headers(app)) as client:
        for _ in range(2):  # the second round is answered from the cache: still each's own
            for n, body in enumerate(bodies):
                answer = (await client.post("/predict", json=body)).json()
                assert answer["model_version"] == expected[n]
                assert answer["churn_probability"] == pytest.approx(
                    by_version[expected[n]][n], abs=1e-9
                )
        batch = (await client.post("/predict/batch", json=bodies)).json()["predictions"]
        assert [p["customer_id"] for p in batch] == [b["customer_id"] for b in bodies]
        assert [p["model_version"] for p in batch] == expected
        for n, answer in enumerate(batch):
            assert answer["churn_probability"] == pytest.approx(
                by_version[expected[n]][n], abs=1e-9
            )
        anonymous = await client.post("/predict", json={"features": EXAMPLE_FEATURES})
        assert anonymous.json()["model_version"] == artifact.version
