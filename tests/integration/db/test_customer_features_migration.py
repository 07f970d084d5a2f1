"""Migration 0007 moves the 19 Telco feature columns of stored customers into one JSON object
with the shipped schema's hash, and its downgrade puts them back, on SQLite and PostgreSQL."""

from __future__ import annotations

import anyio
import orjson
import pytest
from sqlalchemy import inspect, text

from churn_mlops.data import telco_schema
from churn_mlops.data.telco_example import EXAMPLE_FEATURES, FEATURE_NAMES
from churn_mlops.db import schema
from churn_mlops.db.engine import create_engine

pytestmark = pytest.mark.timeout(120)

BEFORE = "0006_prediction_features"
AFTER = "0007_customer_features_json"
# Whole and fractional floats, a null, a zero tenure: whatever the columns held.
ROWS = {
    "M-0": dict(EXAMPLE_FEATURES),
    "M-1": {**EXAMPLE_FEATURES, "tenure": 0, "monthly_charges": 20.0, "total_charges": None},
    "M-2": {**EXAMPLE_FEATURES, "tenure": 72, "monthly_charges": 118.75, "total_charges": 8684.8},
}


async def _columns(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            columns = await connection.run_sync(lambda c: inspect(c).get_columns("customers"))
    finally:
        await engine.dispose()
    return {column["name"] for column in columns}


async def _execute(
    url: str, statement: str, parameters: list[dict[str, object]] | dict[str, object] | None = None
) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(statement), parameters or {})
            return [tuple(row) for row in result.all()] if result.returns_rows else []
    finally:
        await engine.dispose()


def _insert_columns(url: str) -> None:
    names = ", ".join(FEATURE_NAMES)
    values = ", ".join(f":{name}" for name in FEATURE_NAMES)
    anyio.run(
        _execute,
        url,
        f"INSERT INTO customers (external_id, {names}) VALUES (:external_id, {values})",  # noqa: S608
        [{"external_id": key, **features} for key, features in ROWS.items()],
    )


def test_0007_moves_the_columns_into_json_and_its_downgrade_restores_them(
    database_url: str,
) -> None:
    schema.upgrade(database_url, BEFORE)
    anyio.run(_execute, database_url, "DELETE FROM predictions")
    anyio.run(_execute, database_url, "DELETE FROM customers")
    _insert_columns(database_url)
    try:
        schema.upgrade(database_url, AFTER)
        assert anyio.run(_columns, database_url) == {
            "id",
            "external_id",
            "features",
            "schema_sha256",
            "created_at",
            "updated_at",
        }
        stored = anyio.run(
            _execute,
            database_url,
            "SELECT external_id, CAST(features AS TEXT), schema_sha256 FROM customers "
            "ORDER BY external_id",
        )
        # The text is the service's own encoding: compact, in the schema's order, 20.0 not 20.
        assert stored == [
            (key, orjson.dumps(features).decode(), telco_schema().sha256)
            for key, features in ROWS.items()
        ]

        schema.downgrade(database_url, BEFORE)
        assert set(FEATURE_NAMES) <= anyio.run(_columns, database_url)
        assert "features" not in anyio.run(_columns, database_url)
        names = ", ".join(FEATURE_NAMES)
        restored = anyio.run(
            _execute,
            database_url,
            f"SELECT external_id, {names} FROM customers ORDER BY external_id",  # noqa: S608
        )
        assert {row[0]: dict(zip(FEATURE_NAMES, row[1:], strict=True)) for row in restored} == ROWS
    finally:
        anyio.run(_execute, database_url, "DELETE FROM customers")
        schema.upgrade(database_url)


def test_0007_downgrade_refuses_customers_of_another_schema(database_url: str) -> None:
    schema.upgrade(database_url)
    anyio.run(_execute, database_url, "DELETE FROM predictions")
    anyio.run(_execute, database_url, "DELETE FROM customers")
    cast = "CAST(:f AS json)" if database_url.startswith("postgresql") else ":f"
    anyio.run(
        _execute,
        database_url,
        "INSERT INTO customers (external_id, features, schema_sha256) "  # noqa: S608
        f"VALUES ('O-1', {cast}, '0000')",
        {"f": '{"seats":3}'},
    )
    try:
        with pytest.raises(RuntimeError, match="1 customers have features of another schema"):
            schema.downgrade(database_url, BEFORE)
        assert "features" in anyio.run(_columns, database_url)
    finally:
        anyio.run(_execute, database_url, "DELETE FROM customers")
        schema.upgrade(database_url)
