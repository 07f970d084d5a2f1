"""Reason codes with a database: `GET /customers/{id}?explain=true` recomputes the stored
customer's reasons (nothing is stored), and explained predictions are logged like the rest; on
SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from churn_mlops.api.app import create_app
from churn_mlops.data.telco_example import EXAMPLE_FEATURES, FEATURE_NAMES
from churn_mlops.model.artifact import ModelArtifact
from tests.integration.db.prediction_log.conftest import (
    SettingsFactory,
    add_customers,
    logged_rows,
    running,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

FEATURES = {**EXAMPLE_FEATURES, "contract": "Month-to-month", "tenure": 2, "total_charges": None}


async def test_customer_detail_with_explain_has_the_stored_features_reasons(
    migrated_database_url: str, log_settings: SettingsFactory, artifact: ModelArtifact
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    customer = f"{prefix}stored"
    await add_customers(migrated_database_url, [customer], FEATURES)
    app = create_app(log_settings(migrated_database_url), artifact)
    async with running(app) as client:
        plain = await client.get(f"/customers/{customer}")
        explained = await client.get(f"/customers/{customer}", params={"explain": "true"})
        limited = await client.get(f"/customers/{customer}?limit=3&explain=true")
        scored = await client.post("/predict", json={"features": FEATURES, "explain": True})
        unknown = await client.get(f"/customers/{prefix}nobody", params={"explain": "true"})

    assert plain.status_code == explained.status_code == limited.status_code == 200
    assert "reasons" not in plain.json()
    body = explained.json()
    reasons = body.pop("reasons")
    assert body == plain.json()
    assert reasons == scored.json()["reasons"] == limited.json()["reasons"]
    assert artifact.explainer is not None
    row = artifact.encoder.encode_row(FEATURES)
    contributions = dict(
        zip(FEATURE_NAMES, artifact.explainer.explain(row)[0].tolist(), strict=True)
    )
    for reason in reasons["features"]:
        assert reason["contribution"] == contributions[reason["feature"]]
        assert reason["value"] == FEATURES[reason["feature"]]
    assert unknown.status_code == 404


async def test_explained_predictions_are_logged_like_the_others(
    migrated_database_url: str, log_settings: SettingsFactory, artifact: ModelArtifact
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    app = create_app(log_settings(migrated_database_url), artifact)
    async with running(app) as client:
        for n, explain in enumerate((True, False, True)):
            body = {"customer_id": f"{prefix}single-{n}", "features": FEATURES, "explain": explain}
            assert (await client.post("/predict", json=body)).status_code == 200
        batch = [
            {"customer_id": f"{prefix}batch-{k}", "features": FEATURES, "explain": k % 2 == 0}
            for k in range(4)
        ]
        assert (await client.post("/predict/batch", json=batch)).status_code == 200

    logged = {external for _, _, external in await logged_rows(migrated_database_url, prefix)}
    assert logged == {f"{prefix}single-{n}" for n in range(3)} | {
        f"{prefix}batch-{k}" for k in range(4)
    }
