"""Login and keys through the real app on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from churn_mlops.api.app import create_app
from churn_mlops.db.engine import Database
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.security.passwords import PasswordVerifier
from churn_mlops.security.store import CredentialStore, KeyInfo
from churn_mlops.settings import Settings
from tests.fixtures.security import TEST_PEPPER, provision_key, security_settings

pytestmark = pytest.mark.timeout(120)
PASSWORD = "correct horse battery"  # noqa: S105 - a test user's


def _store_call(url: str, name: str, *args: object) -> object:
    async def call() -> object:
        database = Database.from_url(url)
        try:
            store = CredentialStore(database.sessions, TEST_PEPPER.encode())
            return await getattr(store, name)(*args)
        finally:
            await database.dispose()

    return asyncio.run(call())


@pytest.fixture(scope="module")
def username(migrated_database_url: str) -> str:
    name = f"user-{uuid.uuid4().hex[:8]}"
    password_hash = PasswordVerifier().hash(PASSWORD)
    _store_call(migrated_database_url, "create_user", name, password_hash, ["read"])
    return name


@pytest.fixture
def client(
    migrated_database_url: str, artifact_dir: Path, artifact: ModelArtifact
) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=artifact_dir,
        environment="test",
        database_url=migrated_database_url,
        auth_cache_ttl_seconds=0.2,
        prediction_log_enabled=False,
        **security_settings(),
    )
    with TestClient(create_app(settings, artifact)) as test_client:
        yield test_client


def test_login_with_json_gives_a_token_that_reads(client: TestClient, username: str) -> None:
    response = client.post("/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"  # noqa: S105
    assert body["expires_in"] == 900
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert client.get("/model", headers=headers).status_code == 200
    # The user has `read` only.
    refused = client.post("/predict", json={"features": {}}, headers=headers)
    assert refused.status_code == 403


def test_login_with_the_oauth2_password_form(client: TestClient, username: str) -> None:
    response = client.post(
        "/auth/login",
        data={"grant_type": "password", "username": username, "password": PASSWORD},
    )
    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"  # noqa: S105


@pytest.mark.parametrize("who", ["wrong-password", "unknown-user"])
def test_login_refusals_look_the_same(client: TestClient, username: str, who: str) -> None:
    credentials = (
        {"username": username, "password": "wrong horse battery"}
        if who == "wrong-password"
        else {"username": f"nobody-{uuid.uuid4().hex[:6]}", "password": PASSWORD}
    )
    response = client.post("/auth/login", json=credentials)
    assert response.status_code == 401
    assert response.json() == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": "Incorrect username or password.",
    }
    assert response.headers["www-authenticate"].startswith('Bearer realm="churn-mlops"')


def test_login_with_a_missing_field_is_422_naming_it(client: TestClient) -> None:
    response = client.post("/auth/login", json={"username": "alice"})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "password", "reason": "Field required"}]
    assert "alice" not in response.text


def test_login_refuses_other_media_types(client: TestClient) -> None:
    response = client.post("/auth/login", content=b"alice", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415


def test_a_key_revoked_in_the_database_stops_working_after_the_cache_ttl(
    client: TestClient, migrated_database_url: str
) -> None:
    name = f"svc-{uuid.uuid4().hex[:8]}"
    key = provision_key(migrated_database_url, name, ["read"])
    headers = {"X-API-Key": key}
    assert client.get("/model", headers=headers).status_code == 200
    _store_call(migrated_database_url, "revoke_key", name)
    deadline = 5.0
    status = 200
    while deadline > 0 and status == 200:
        asyncio.run(asyncio.sleep(0.1))
        deadline -= 0.1
        status = client.get("/model", headers=headers).status_code
    assert status == 401


def test_admin_creates_lists_and_revokes_keys_over_the_api(
    client: TestClient, migrated_database_url: str
) -> None:
    admin = {
        "X-API-Key": provision_key(migrated_database_url, f"adm-{uuid.uuid4().hex[:8]}", ["admin"])
    }
    name = f"api-{uuid.uuid4().hex[:8]}"
    created = client.post("/auth/keys", json={"name": name, "scopes": ["read"]}, headers=admin)
    assert created.status_code == 201
    new_key = created.json()["key"]
    assert client.get("/model", headers={"X-API-Key": new_key}).status_code == 200
    listed = client.get("/auth/keys", headers=admin).json()
    assert name in [k["name"] for k in listed]
    assert all("key" not in k for k in listed)
    revoked = client.delete(f"/auth/keys/{name}", headers=admin)
    assert revoked.status_code == 200
    # Revoked through this worker: refused at once, whatever the cache TTL.
    assert client.get("/model", headers={"X-API-Key": new_key}).status_code == 401
    assert client.delete("/auth/keys/no-such-key", headers=admin).status_code == 404


def test_last_use_is_written_when_the_app_stops(
    migrated_database_url: str, artifact_dir: Path, artifact: ModelArtifact
) -> None:
    name = f"used-{uuid.uuid4().hex[:8]}"
    key = provision_key(migrated_database_url, name, ["read"])
    settings = Settings(
        model_dir=artifact_dir,
        environment="test",
        database_url=migrated_database_url,
        prediction_log_enabled=False,
        **security_settings(),
    )
    with TestClient(create_app(settings, artifact)) as test_client:
        assert test_client.get("/model", headers={"X-API-Key": key}).status_code == 200
        keys = _store_call(migrated_database_url, "list_keys")
        assert [k.last_used_at for k in keys if k.name == name] == [None]  # type: ignore[attr-defined]
    keys = _store_call(migrated_database_url, "list_keys")
    (info,) = [k for k in keys if isinstance(k, KeyInfo) and k.name == name]  # type: ignore[attr-defined]
    assert info.last_used_at is not None
