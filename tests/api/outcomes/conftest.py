"""An app on a migrated SQLite database holding three customers, with an API key per scope."""

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
from churn_mlops.security.principal import Scope
from churn_mlops.settings import Settings
from tests.fixtures.outcomes import add_customers, empty_tables
from tests.fixtures.security import TEST_PEPPER, security_settings

CUSTOMERS = ("C-0001", "C-0002", "C-0003")


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('outcomes') / 'churn.db'}"
    schema.upgrade(url)
    return url


async def _reset(url: str) -> None:
    database = Database.from_url(url)
    try:
        await empty_tables(database)
        await add_customers(database, *CUSTOMERS)
    finally:
        await database.dispose()


@pytest.fixture
def keys() -> MemoryKeySource:
    return MemoryKeySource(TEST_PEPPER.encode())


@pytest.fixture
def key_of(keys: MemoryKeySource) -> dict[str, dict[str, str]]:
    """Headers with a key holding only that scope, by scope."""
    return {scope: {"X-API-Key": keys.add(f"only-{scope}", [scope])} for scope in Scope}


@pytest.fixture
def client(
    database_url: str, artifact_dir: Path, artifact: ModelArtifact, keys: MemoryKeySource
) -> Iterator[TestClient]:
    """The app with CUSTOMERS and no outcome yet; requests carry a key with the predict scope."""
    asyncio.run(_reset(database_url))
    settings = Settings(
        model_dir=artifact_dir,
        environment="test",
        database_url=database_url,
        prediction_log_enabled=False,
        **security_settings(),
    )
    app = create_app(settings, artifact)
    app.use_keys(keys)
    headers = {"X-API-Key": keys.add("predictor", [Scope.PREDICT])}
    with TestClient(app, headers=headers) as test_client:
        yield test_client
