"""`CHURN_LOG_FEATURES`: the scored rows' encoded features reach `predictions.features` and read
back as the same float32 values, on SQLite and PostgreSQL, through the sink, through a spill
and its replay, and through the running app; off, the column stays null."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from churn_mlops.api.app import create_app
from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import FEATURE_NAMES
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Prediction
from churn_mlops.db.prediction_log import PredictionLogWriter, SqlPredictionSink, identify
from churn_mlops.db.prediction_log.features import decode_rows, encode_row, encode_rows
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.features import FloatMatrix
from tests.fixtures.requests import prediction_bodies
from tests.integration.db.prediction_log.conftest import SettingsFactory, running

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


def _encoded(artifact: ModelArtifact, dataset: TelcoDataset, count: int) -> FloatMatrix:
    bodies = prediction_bodies(dataset, count)
    rows = np.concatenate([artifact.encoder.encode_row(body["features"]) for body in bodies])
    rows[0, FEATURE_NAMES.index("total_charges")] = np.nan  # a missing value survives too
    return rows


async def _stored_features(url: str, prefix: str) -> dict[str, bytes | None]:
    database = Database.from_url(url)
    try:
        async with database.engine.connect() as connection:
            result = await connection.execute(
                select(Prediction.external_customer_id, Prediction.features).where(
                    Prediction.external_customer_id.startswith(prefix)
                )
            )
            return {str(customer): features for customer, features in result.all()}
    finally:
        await database.dispose()


def _matrix(stored: dict[str, bytes | None], customers: list[str]) -> FloatMatrix:
    blobs = [stored[customer] for customer in customers]
    assert all(blob is not None for blob in blobs)
    return decode_rows([blob for blob in blobs if blob is not None], len(FEATURE_NAMES))


async def test_the_sink_stores_features_that_read_back_as_the_same_floats(
    migrated_database_url: str, artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    prefix = f"f{uuid.uuid4().hex[:8]}-"
    rows = _encoded(artifact, dataset, 40)
    customers = [f"{prefix}{n}" for n in range(len(rows))]
    now = 1_790_000_000.0
    recorded = [
        (customer, "v1", 0.5, True, False, 1.0, now, None, None, blob)
        for customer, blob in zip(customers, encode_rows(rows), strict=True)
    ]
    recorded.append((f"{prefix}without", "v1", 0.5, True, False, 1.0, now, None, None, None))
    database = Database.from_url(migrated_database_url)
    sink = SqlPredictionSink.for_engine(database.engine)
    try:
        assert await sink.write(identify(recorded)) == 41
    finally:
        await sink.close()
        await database.dispose()

    stored = await _stored_features(migrated_database_url, prefix)
    assert stored[f"{prefix}without"] is None
    # Bit for bit (assert_array_equal counts NaN equal to NaN).
    np.testing.assert_array_equal(_matrix(stored, customers), rows)
    assert len(stored[customers[1]] or b"") == 4 * len(FEATURE_NAMES)


def _spilled_and_replayed(writer: PredictionLogWriter) -> bool:
    stats = writer.stats()
    return 0 < stats.rows_spilled <= stats.rows_replayed and stats.queue_depth == 0


async def test_features_survive_a_spill_and_its_replay(
    migrated_database_url: str, artifact: ModelArtifact, dataset: TelcoDataset, tmp_path: Path
) -> None:
    prefix = f"s{uuid.uuid4().hex[:8]}-"
    rows = _encoded(artifact, dataset, 60)
    customers = [f"{prefix}{n}" for n in range(len(rows))]
    database = Database.from_url(migrated_database_url)
    writer = PredictionLogWriter(
        SqlPredictionSink.for_engine(database.engine),
        tmp_path / "spill" / "predictions.jsonl",
        flush_interval=0.02,
        batch_rows=5,
        max_buffer=5,
    )
    try:
        await writer.start()
        # Recorded in one loop turn: past `max_buffer`, the spiller moves them to the file.
        for customer, row in zip(customers, rows, strict=True):
            writer.record(customer, 0.25, False, False, 1.0, "v1", features=encode_row(row))
        async with asyncio.timeout(30):
            while not _spilled_and_replayed(writer):  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.02)
    finally:
        await writer.close()
        await database.dispose()
    assert writer.stats().rows_spilled > 0

    stored = await _stored_features(migrated_database_url, prefix)
    np.testing.assert_array_equal(_matrix(stored, customers), rows)


@pytest.mark.parametrize("log_features", [True, False])
async def test_the_app_logs_what_it_scored_only_when_asked(
    migrated_database_url: str,
    log_settings: SettingsFactory,
    artifact: ModelArtifact,
    dataset: TelcoDataset,
    log_features: bool,
) -> None:
    prefix = f"a{uuid.uuid4().hex[:8]}-"
    bodies = prediction_bodies(dataset, 30)
    singles = [{**body, "customer_id": f"{prefix}one-{n}"} for n, body in enumerate(bodies[:10])]
    batch = [{**body, "customer_id": f"{prefix}many-{n}"} for n, body in enumerate(bodies[10:])]
    settings = log_settings(migrated_database_url, log_features=log_features)
    async with running(create_app(settings, artifact)) as client:
        for body in singles:
            assert (await client.post("/predict", json=body)).status_code == 200
        assert (await client.post("/predict/batch", json=batch)).status_code == 200

    stored = await _stored_features(migrated_database_url, prefix)
    customers = [body["customer_id"] for body in singles + batch]
    assert sorted(stored) == sorted(customers)
    if not log_features:
        assert set(stored.values()) == {None}
        return
    expected = np.concatenate(
        [artifact.encoder.encode_row(body["features"]) for body in singles + batch]
    )
    np.testing.assert_array_equal(_matrix(stored, customers), expected)
