"""Migration 0006 adds the nullable `predictions.features` column and takes it away again,
keeping the rows logged before it, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import anyio
import pytest
from sqlalchemy import inspect, text

from churn_mlops.db import schema
from churn_mlops.db.engine import create_engine

pytestmark = pytest.mark.timeout(120)


async def _columns(url: str) -> dict[str, bool]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            columns = await connection.run_sync(lambda c: inspect(c).get_columns("predictions"))
    finally:
        await engine.dispose()
    return {column["name"]: column["nullable"] for column in columns}


async def _execute(
    url: str, statement: str, parameters: dict[str, object] | None = None
) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(statement), parameters or {})
            return [tuple(row) for row in result.all()] if result.returns_rows else []
    finally:
        await engine.dispose()


def test_features_column_comes_with_0006_and_goes_with_its_downgrade(database_url: str) -> None:
    schema.upgrade(database_url, "0005_key_rate_limits")
    row_id = uuid.uuid4().hex
    anyio.run(
        _execute,
        database_url,
        "INSERT INTO predictions (id, model_version, probability, will_churn, cached, "
        "created_at) VALUES (:id, 'v1', 0.5, false, false, CURRENT_TIMESTAMP)",
        {"id": row_id},
    )
    assert "features" not in anyio.run(_columns, database_url)
    try:
        schema.upgrade(database_url, "0006_prediction_features")
        assert anyio.run(_columns, database_url)["features"] is True  # nullable
        assert anyio.run(_execute, database_url, "SELECT features FROM predictions") == [(None,)]

        schema.downgrade(database_url, "0005_key_rate_limits")
        assert "features" not in anyio.run(_columns, database_url)
        assert anyio.run(_execute, database_url, "SELECT count(*) FROM predictions") == [(1,)]
    finally:
        schema.upgrade(database_url)
