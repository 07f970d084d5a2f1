"""A rate limit of each key's own, created over the API and the CLI, and what it does to the
key's requests (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from churn_mlops.api.app import create_app
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings
from tests.fixtures.security import provision_key, security_settings

pytestmark = pytest.mark.timeout(120)
BODY = {"customer_id": "8879-ZKJOF", "features": EXAMPLE_FEATURES}


@pytest.fixture
def client(
    migrated_database_url: str, artifact_dir: Path, artifact: ModelArtifact
) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=artifact_dir,
        environment="test",
        database_url=migrated_database_url,
        prediction_log_enabled=False,
        **security_settings(),
    )
    with TestClient(create_app(settings, artifact)) as test_client:
        yield test_client


@pytest.fixture
def admin(migrated_database_url: str) -> dict[str, str]:
    name = f"adm-{uuid.uuid4().hex[:8]}"
    return {"X-API-Key": provision_key(migrated_database_url, name, ["admin"])}


def test_a_key_created_with_a_rate_limit_is_held_to_it(
    client: TestClient, admin: dict[str, str]
) -> None:
    name = f"crm-{uuid.uuid4().hex[:8]}"
    created = client.post(
        "/auth/keys",
        json={"name": name, "scopes": ["predict"], "rate_limit": {"per_second": 0.01}},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    # The burst is twice the rate, and at least one request.
    assert created.json()["rate_limit"] == {"per_second": 0.01, "burst": 1}
    key = {"X-API-Key": created.json()["key"]}
    statuses = [client.post("/predict", json=BODY, headers=key).status_code for _ in range(2)]
    assert statuses == [200, 429]
    (listed,) = [k for k in client.get("/auth/keys", headers=admin).json() if k["name"] == name]
    assert listed["rate_limit"] == {"per_second": 0.01, "burst": 1}


def test_a_key_created_without_a_rate_limit_gets_the_default(
    client: TestClient, admin: dict[str, str]
) -> None:
    name = f"svc-{uuid.uuid4().hex[:8]}"
    created = client.post("/auth/keys", json={"name": name, "scopes": ["read"]}, headers=admin)
    assert created.status_code == 201
    assert created.json()["rate_limit"] is None


@pytest.mark.parametrize(
    ("limit", "field"),
    [
        ({"per_second": 0}, "rate_limit.per_second"),
        ({"per_second": 2_000_000}, "rate_limit.per_second"),
        ({"per_second": 10, "burst": 0}, "rate_limit.burst"),
        ({"burst": 10}, "rate_limit.per_second"),
    ],
    ids=["zero", "too-high", "zero-burst", "burst-alone"],
)
def test_a_rate_limit_out_of_range_is_422_naming_the_field(
    client: TestClient, admin: dict[str, str], limit: dict[str, float], field: str
) -> None:
    response = client.post(
        "/auth/keys",
        json={"name": f"bad-{uuid.uuid4().hex[:8]}", "scopes": ["predict"], "rate_limit": limit},
        headers=admin,
    )
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == [field]
