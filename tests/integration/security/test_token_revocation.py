"""A bearer token does not outlive its user: deleting or disabling the user in the database
refuses the user's tokens within the verified-credential cache's TTL, on the fast path and on
FastAPI routes alike (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, update

from churn_mlops.api.app import create_app
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.db.credentials import User
from churn_mlops.db.engine import Database
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.security.passwords import PasswordVerifier
from churn_mlops.security.store import CredentialStore
from churn_mlops.settings import Settings
from tests.fixtures.security import TEST_PEPPER, security_settings

pytestmark = pytest.mark.timeout(120)
PASSWORD = "correct horse battery"  # noqa: S105 - a test user's
CACHE_TTL = 0.5
BODY = {"customer_id": "8879-ZKJOF", "features": EXAMPLE_FEATURES}


async def _create_user(url: str, name: str) -> None:
    database = Database.from_url(url)
    try:
        store = CredentialStore(database.sessions, TEST_PEPPER.encode())
        password_hash = PasswordVerifier().hash(PASSWORD)
        await store.create_user(name, password_hash, ["read", "predict"])
    finally:
        await database.dispose()


async def _change_user(url: str, name: str, change: str) -> None:
    """What an operator does in SQL (or `churn-mlops users delete|disable`)."""
    database = Database.from_url(url)
    try:
        async with database.sessions() as session:
            if change == "delete":
                await session.execute(delete(User).where(User.username == name))
            else:
                await session.execute(
                    update(User).where(User.username == name).values(disabled=True)
                )
            await session.commit()
    finally:
        await database.dispose()


@pytest.fixture
def client(
    migrated_database_url: str, artifact_dir: Path, artifact: ModelArtifact
) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=artifact_dir,
        environment="test",
        database_url=migrated_database_url,
        auth_cache_ttl_seconds=CACHE_TTL,
        prediction_log_enabled=False,
        **security_settings(),
    )
    with TestClient(create_app(settings, artifact)) as test_client:
        yield test_client


def _statuses(client: TestClient, headers: dict[str, str]) -> tuple[int, int]:
    model = client.get("/model", headers=headers).status_code
    predicted = client.post("/predict", json=BODY, headers=headers).status_code
    return model, predicted


@pytest.mark.parametrize("change", ["delete", "disable"])
def test_a_users_tokens_are_refused_within_the_cache_ttl_of_its_deletion_or_disabling(
    client: TestClient, migrated_database_url: str, change: str
) -> None:
    name = f"user-{uuid.uuid4().hex[:8]}"
    asyncio.run(_create_user(migrated_database_url, name))
    login = client.post("/auth/login", json={"username": name, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert _statuses(client, headers) == (200, 200)

    asyncio.run(_change_user(migrated_database_url, name, change))
    changed_at = time.monotonic()
    time.sleep(CACHE_TTL + 0.05)
    after_ttl = _statuses(client, headers)

    assert after_ttl == (401, 401), f"{time.monotonic() - changed_at:.2f} s after the {change}"
    refused = client.get("/model", headers=headers)
    assert refused.json()["detail"] == "The bearer token is not valid."
    assert refused.headers["www-authenticate"].endswith('error="invalid_token"')
