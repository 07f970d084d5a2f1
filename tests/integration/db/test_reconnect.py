"""PostgreSQL dropping the service's connections costs no request: the pool's pre-ping
replaces a dead connection before a request uses it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from churn_mlops.api.app import create_app
from churn_mlops.db import schema
from churn_mlops.db.engine import Database
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings

pytestmark = pytest.mark.timeout(120)


async def _terminate_backends(url: str) -> int:
    """pg_terminate_backend on every other connection to the database; how many."""
    database = Database.from_url(url)
    try:
        async with database.engine.connect() as connection:
            result = await connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            return int(result.scalar() or 0)
    finally:
        await database.dispose()


def test_customer_endpoints_survive_terminated_connections(
    postgres_database: str, artifact_dir: Path, artifact: ModelArtifact
) -> None:
    schema.upgrade(postgres_database)
    settings = Settings(
        model_dir=artifact_dir,
        environment="test",
        auth_enabled=False,
        prediction_log_enabled=False,
        database_url=postgres_database,
    )
    with TestClient(create_app(settings, artifact)) as client:
        # Several requests at once leave several connections in the pool.
        assert all(client.get("/customers").status_code == 200 for _ in range(5))
        assert asyncio.run(_terminate_backends(postgres_database)) >= 1
        after = [client.get("/customers").status_code for _ in range(5)]
        ready = client.get("/health/ready").json()
    assert after == [200] * 5
    assert ready["database"] == "ok"
