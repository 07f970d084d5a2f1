"""The whole app as a hostile client meets it: default limits, a migrated SQLite database
holding one customer, API keys in memory; the fast path for `POST /predict` on or off."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from churn_mlops.api.app import create_app
from churn_mlops.db import schema
from churn_mlops.db.engine import Database
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.security.authenticator import MemoryKeySource
from churn_mlops.settings import Settings
from tests.fixtures.outcomes import add_customers, empty_tables
from tests.fixtures.security import ALL_SCOPES, TEST_PEPPER, security_settings

CUSTOMER = "C-0001"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'churn.db'}"
    schema.upgrade(url)
    return url


async def _reset(url: str) -> None:
    database = Database.from_url(url)
    try:
        await empty_tables(database)
        await add_customers(database, CUSTOMER)
    finally:
        await database.dispose()


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi-route"])
def fast_path(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def keys() -> MemoryKeySource:
    return MemoryKeySource(TEST_PEPPER.encode())


@pytest.fixture
def app_client(
    database_url: str,
    artifact_dir: Path,
    artifact: ModelArtifact,
    keys: MemoryKeySource,
    fast_path: bool,
) -> Iterator[TestClient]:
    """The app, and a client that sends no credentials unless a test adds them."""
    asyncio.run(_reset(database_url))
    settings = Settings(
        model_dir=artifact_dir,
        environment="test",
        database_url=database_url,
        prediction_log_enabled=False,
        fast_predict_enabled=fast_path,
        **security_settings(),
    )
    app = create_app(settings, artifact)
    app.use_keys(keys)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def key(keys: MemoryKeySource) -> dict[str, str]:
    """Headers with a key holding every scope."""
    return {"X-API-Key": keys.add("hostile", ALL_SCOPES)}
