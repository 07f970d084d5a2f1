"""Every answered prediction becomes exactly one row, on SQLite and on PostgreSQL, through the
real app (lifespan, fast path, batch route, stored-customer route) under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from churn_mlops.api.app import create_app
from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.model.artifact import ModelArtifact
from tests.fixtures.requests import prediction_bodies
from tests.integration.db.prediction_log.conftest import (
    SettingsFactory,
    add_customers,
    logged_rows,
    running,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

SINGLES, BATCHES, BATCH_ROWS, STORED = 4_900, 50, 100, 100
CONCURRENCY = 64


async def _in_waves(calls: list[Any], width: int = CONCURRENCY) -> list[httpx.Response]:
    responses: list[httpx.Response] = []
    for start in range(0, len(calls), width):
        responses.extend(await asyncio.gather(*(call() for call in calls[start : start + width])))
    return responses


async def test_ten_thousand_predictions_produce_ten_thousand_rows(
    migrated_database_url: str,
    log_settings: SettingsFactory,
    artifact: ModelArtifact,
    dataset: TelcoDataset,
) -> None:
    url, prefix = migrated_database_url, f"t{uuid.uuid4().hex[:8]}-"
    features = prediction_bodies(dataset, 200)
    stored_ids = [f"{prefix}stored-{n}" for n in range(STORED)]
    database_ids = await add_customers(url, stored_ids, features[0]["features"])

    def single(n: int) -> Any:
        body = {"customer_id": f"{prefix}single-{n}", "features": features[n % 200]["features"]}
        return lambda: client.post("/predict", json=body)

    def batch(n: int) -> Any:
        body = [
            {"customer_id": f"{prefix}batch-{n}-{k}", "features": features[k]["features"]}
            for k in range(BATCH_ROWS)
        ]
        return lambda: client.post("/predict/batch", json=body)

    def stored(n: int) -> Any:
        return lambda: client.post(f"/customers/{stored_ids[n]}/predict")

    calls = (
        [single(n) for n in range(SINGLES)]
        + [batch(n) for n in range(BATCHES)]
        + [stored(n) for n in range(STORED)]
    )
    app = create_app(log_settings(url, prediction_log_batch_rows=250), artifact)
    async with running(app) as client:
        responses = await _in_waves(calls)
        stats_before_close = app.runtime.prediction_log.stats()
        writer = app.runtime.prediction_log
    assert [r.status_code for r in responses] == [200] * len(calls)

    rows = await logged_rows(url, prefix)
    expected = (
        {f"{prefix}single-{n}" for n in range(SINGLES)}
        | {f"{prefix}batch-{n}-{k}" for n in range(BATCHES) for k in range(BATCH_ROWS)}
        | set(stored_ids)
    )
    assert len(rows) == 10_000
    assert len({row_id for row_id, _, _ in rows}) == 10_000
    assert sorted(external for _, _, external in rows) == sorted(expected)
    # The customer id is resolved for stored customers only, in the insert itself.
    resolved = {external: customer for _, customer, external in rows if customer is not None}
    assert resolved == database_ids
    stats = writer.stats()
    assert stats_before_close.rows_recorded == 10_000
    assert (stats.rows_flushed, stats.queue_depth, stats.rows_spilled) == (10_000, 0, 0)
    assert stats.rows_duplicate == 0
    assert stats.flush_failures == 0


async def test_nothing_is_logged_with_the_log_off(
    migrated_database_url: str, log_settings: SettingsFactory, artifact: ModelArtifact
) -> None:
    prefix = f"o{uuid.uuid4().hex[:8]}-"
    settings = log_settings(migrated_database_url, prediction_log_enabled=False)
    app = create_app(settings, artifact)
    async with running(app) as client:
        assert app.runtime.prediction_log is None
        body = {"customer_id": f"{prefix}1", "features": EXAMPLE_FEATURES}
        assert (await client.post("/predict", json=body)).status_code == 200
    assert await logged_rows(migrated_database_url, prefix) == []
