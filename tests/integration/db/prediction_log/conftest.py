from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select

from churn_mlops.api.app import ChurnAPI
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Customer, Prediction, default_schema_sha256
from churn_mlops.settings import Settings
from tests.fixtures.lifespan import in_process_client


@asynccontextmanager
async def running(app: ChurnAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client that talks to it in-process."""
    async with in_process_client(app) as client:
        yield client


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def log_settings(artifact_dir: Path, tmp_path: Path) -> SettingsFactory:
    """Settings of a service whose prediction log writes to `database_url`, flushing often."""

    def make(database_url: str, **overrides: Any) -> Settings:
        options: dict[str, Any] = {
            "model_dir": artifact_dir,
            "environment": "test",
            "auth_enabled": False,
            "database_url": database_url,
            "prediction_log_flush_ms": 20.0,
            "prediction_log_spill_path": tmp_path / "spill" / "predictions.jsonl",
            "prediction_log_retry_max_seconds": 0.2,
            # These tests count rows, not shedding: a loop turn slowed by a busy machine must
            # not turn a request into a 503.
            "batch_max_queue_delay_ms": 10_000.0,
        }
        options.update(overrides)
        return Settings(**options)

    return make


async def logged_rows(url: str, prefix: str) -> list[tuple[Any, ...]]:
    """(id, customer_id, external_customer_id) of the rows whose customer id starts with
    `prefix`."""
    database = Database.from_url(url)
    try:
        async with database.engine.connect() as connection:
            result = await connection.execute(
                select(
                    Prediction.id, Prediction.customer_id, Prediction.external_customer_id
                ).where(Prediction.external_customer_id.startswith(prefix))
            )
            return [tuple(row) for row in result.all()]
    finally:
        await database.dispose()


async def count_rows(url: str) -> int:
    database = Database.from_url(url)
    try:
        async with database.engine.connect() as connection:
            return int((await connection.execute(select(func.count(Prediction.id)))).scalar_one())
    finally:
        await database.dispose()


async def add_customers(
    url: str, external_ids: list[str], features: dict[str, Any]
) -> dict[str, int]:
    """Store customers with these external ids (same features); their database ids."""
    database = Database.from_url(url)
    try:
        async with database.engine.begin() as connection:
            await connection.execute(
                insert(Customer),
                [
                    {
                        "external_id": external_id,
                        "features": features,
                        "schema_sha256": default_schema_sha256(),
                    }
                    for external_id in external_ids
                ],
            )
            result = await connection.execute(
                select(Customer.external_id, Customer.id).where(
                    Customer.external_id.in_(external_ids)
                )
            )
            return {external_id: customer_id for external_id, customer_id in result.all()}
    finally:
        await database.dispose()
