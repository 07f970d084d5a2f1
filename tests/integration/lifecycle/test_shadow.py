"""Shadow mode through the real app on SQLite and PostgreSQL: the champion answers, and every
answered row is logged once with the challenger's probability of the same row."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from churn_mlops.api.app import create_app
from churn_mlops.data import TelcoDataset
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Prediction
from churn_mlops.model.artifact import ModelArtifact
from tests.fixtures.lifespan import in_process_client
from tests.fixtures.requests import prediction_bodies
from tests.integration.lifecycle.conftest import SettingsFactory

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]  # trains a challenger once per session

SINGLES, BATCH_ROWS = 40, 25


async def shadow_rows(url: str, prefix: str) -> dict[str, tuple[Any, ...]]:
    database = Database.from_url(url)
    try:
        async with database.engine.connect() as connection:
            result = await connection.execute(
                select(
                    Prediction.external_customer_id,
                    Prediction.model_version,
                    Prediction.probability,
                    Prediction.challenger_version,
                    Prediction.challenger_probability,
                ).where(Prediction.external_customer_id.startswith(prefix))
            )
            rows = result.all()
    finally:
        await database.dispose()
    by_customer = {row[0]: tuple(row[1:]) for row in rows}
    assert len(by_customer) == len(rows), "a prediction was logged twice"
    return by_customer


async def test_shadow_logs_both_models_probabilities_of_every_answered_row(
    migrated_database_url: str,
    artifact: ModelArtifact,
    challenger_artifact: ModelArtifact,
    dataset: TelcoDataset,
    lifecycle_settings: SettingsFactory,
) -> None:
    settings = lifecycle_settings()
    prefix = f"s{uuid.uuid4().hex[:8]}-"
    bodies = prediction_bodies(dataset, SINGLES + BATCH_ROWS)
    for n, body in enumerate(bodies):
        body["customer_id"] = f"{prefix}{n}"
    app = create_app(settings)
    async with in_process_client(app) as client:
        model = (await client.get("/model")).json()
        assert model["challenger"] == {
            "version": challenger_artifact.version,
            "mode": "shadow",
            "canary_percent": None,
        }
        for body in bodies[:SINGLES]:
            response = await client.post("/predict", json=body)
            assert response.json()["model_version"] == artifact.version
        batch = await client.post("/predict/batch", json=bodies[SINGLES:])
        assert {p["model_version"] for p in batch.json()["predictions"]} == {artifact.version}
    # The lifespan's exit wrote the log.

    rows = await shadow_rows(migrated_database_url, prefix)
    encoded = artifact.encoder.encode_columns(dataset.subset(range(SINGLES + BATCH_ROWS)).columns)
    expected_champion = artifact.forest.predict(encoded)
    expected_challenger = challenger_artifact.forest.predict(encoded)
    assert not np.allclose(expected_champion, expected_challenger)  # two different models
    assert len(rows) == SINGLES + BATCH_ROWS
    for n in range(SINGLES + BATCH_ROWS):
        version, probability, shadow_version, shadow = rows[f"{prefix}{n}"]
        assert version == artifact.version
        assert probability == pytest.approx(expected_champion[n], abs=1e-9)
        assert shadow_version == challenger_artifact.version
        assert shadow == pytest.approx(expected_challenger[n], abs=1e-9)
