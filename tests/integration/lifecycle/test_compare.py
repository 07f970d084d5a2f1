"""GET /model/compare on SQLite and PostgreSQL: shadow traffic for stored customers, their
outcomes, then the comparison's figures against numpy on the two models' own probabilities."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest

from churn_mlops.api.app import create_app
from churn_mlops.data import TelcoDataset
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.quality_metrics import brier_score, pr_auc, roc_auc
from tests.fixtures.lifespan import in_process_client
from tests.fixtures.requests import prediction_bodies
from tests.integration.db.prediction_log.conftest import add_customers
from tests.integration.lifecycle.conftest import SettingsFactory

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]  # trains a challenger once per session

CUSTOMERS = 80


async def compared_once_logged(client: httpx.AsyncClient, rows: int) -> dict[str, Any]:
    """The comparison once the prediction log has written `rows` shadow rows."""
    for _ in range(200):
        comparison: dict[str, Any] = (await client.get("/model/compare")).json()
        if comparison["shadow"]["rows"] >= rows:
            return comparison
        await asyncio.sleep(0.05)
    raise AssertionError(f"the log did not reach {rows} shadow rows: {comparison}")


async def test_compare_reports_agreement_deltas_and_outcome_quality(
    migrated_database_url: str,
    artifact: ModelArtifact,
    challenger_artifact: ModelArtifact,
    dataset: TelcoDataset,
    lifecycle_settings: SettingsFactory,
) -> None:
    settings = lifecycle_settings(quality_refresh_seconds=0.1)
    prefix = f"c{uuid.uuid4().hex[:8]}-"
    bodies = prediction_bodies(dataset, CUSTOMERS, start=1000)
    ids = [f"{prefix}{n}" for n in range(CUSTOMERS)]
    for body, customer_id in zip(bodies, ids, strict=True):
        body["customer_id"] = customer_id
    await add_customers(migrated_database_url, ids, bodies[0]["features"])
    churned = dataset.churned[1000 : 1000 + CUSTOMERS]
    # Observed tomorrow: the predictions below were made before that date, so they count.
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()

    app = create_app(settings)
    async with in_process_client(app) as client:
        for body in bodies[: CUSTOMERS // 2]:
            assert (await client.post("/predict", json=body)).status_code == 200
        batch = await client.post("/predict/batch", json=bodies[CUSTOMERS // 2 :])
        assert batch.status_code == 200
        for customer_id, outcome in zip(ids, churned, strict=True):
            recorded = await client.post(
                f"/customers/{customer_id}/outcome",
                json={"churned": outcome, "observed_at": tomorrow},
            )
            assert recorded.status_code == 201, recorded.text
        comparison = await compared_once_logged(client, CUSTOMERS)
        # The runtime's quality monitor exports the same outcomes as gauges.
        exported = f'churn_model_live_outcomes{{version="{artifact.version}"}} {CUSTOMERS}.0'
        for _ in range(100):
            if exported in (metrics := (await client.get("/metrics")).text):
                break
            await asyncio.sleep(0.05)
        assert exported in metrics

    encoded = artifact.encoder.encode_columns(dataset.subset(range(1000, 1000 + CUSTOMERS)).columns)
    champion_p = artifact.forest.predict(encoded)
    challenger_p = challenger_artifact.forest.predict(encoded)
    delta = np.abs(challenger_p - champion_p)
    agreement = np.mean(
        (champion_p >= artifact.threshold) == (challenger_p >= challenger_artifact.threshold)
    )
    shadow = comparison["shadow"]
    assert shadow["rows"] == CUSTOMERS
    assert shadow["will_churn_agreement"] == pytest.approx(agreement)
    assert shadow["mean_abs_delta"] == pytest.approx(delta.mean(), abs=1e-9)
    assert shadow["p99_abs_delta"] == pytest.approx(np.quantile(delta, 0.99), abs=1e-9)

    assert comparison["champion"]["version"] == artifact.version
    assert comparison["challenger"]["version"] == challenger_artifact.version
    assert comparison["champion"]["answered"] >= CUSTOMERS
    assert comparison["common_outcomes"] == CUSTOMERS
    outcomes = np.array(churned)
    for side, probabilities in (("champion", champion_p), ("challenger", challenger_p)):
        figures = comparison[side]["outcomes"]
        assert figures["outcomes"] == CUSTOMERS
        assert figures["churned"] == int(outcomes.sum())
        assert figures["roc_auc"] == pytest.approx(roc_auc(outcomes, probabilities))
        assert figures["pr_auc"] == pytest.approx(pr_auc(outcomes, probabilities))
        assert figures["brier_score"] == pytest.approx(brier_score(outcomes, probabilities))


async def test_compare_without_a_challenger_is_a_conflict(
    lifecycle_settings: SettingsFactory,
) -> None:
    settings = lifecycle_settings(challenger_mode="off")
    app = create_app(settings)
    async with in_process_client(app) as client:
        response = await client.get("/model/compare")
    assert response.status_code == 409
    assert "PUT /model/challenger" in response.json()["detail"]
