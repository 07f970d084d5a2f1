"""`POST /customers/{customer_id}/outcome`: idempotent per customer and date, 422 naming the
field, 404 for an unknown customer, 503 without a database, and its scopes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from benchmarks.servers import free_port
from churn_mlops.api.app import create_app
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings
from tests.fixtures.security import api_client, security_settings

pytestmark = pytest.mark.timeout(60)

URL = "/customers/C-0001/outcome"
CHURNED = {"churned": True, "observed_at": "2026-03-10"}


def test_record_outcome_answers_201_created(client: TestClient) -> None:
    response = client.post(URL, json=CHURNED)
    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in ("customer_id", "churned", "observed_at", "status")} == {
        "customer_id": "C-0001",
        "churned": True,
        "observed_at": "2026-03-10",
        "status": "created",
    }
    assert body["revised_at"] is None


def test_record_the_same_outcome_again_answers_200_unchanged(client: TestClient) -> None:
    first = client.post(URL, json=CHURNED).json()
    again = client.post(URL, json=CHURNED)
    assert again.status_code == 200
    assert again.json() == {**first, "status": "unchanged"}


def test_record_another_answer_for_the_same_date_answers_200_updated(client: TestClient) -> None:
    first = client.post(URL, json=CHURNED).json()
    revised = client.post(URL, json={**CHURNED, "churned": False})
    assert revised.status_code == 200
    body = revised.json()
    assert body["status"] == "updated"
    assert body["churned"] is False
    assert body["recorded_at"] == first["recorded_at"]
    assert body["revised_at"] is not None


def test_record_outcome_of_another_date_is_another_outcome(client: TestClient) -> None:
    client.post(URL, json=CHURNED)
    response = client.post(URL, json={**CHURNED, "observed_at": "2026-03-11"})
    assert response.status_code == 201


def _field_errors(response: Any) -> list[str]:
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    return [error["field"] for error in response.json()["errors"]]


@pytest.mark.parametrize("churned", ["maybe", "true", 1, None])
def test_record_outcome_refuses_a_churned_that_is_not_a_json_boolean(
    client: TestClient, churned: object
) -> None:
    response = client.post(URL, json={**CHURNED, "churned": churned})
    assert _field_errors(response) == ["churned"]
    assert response.json()["detail"] == "1 field is invalid: churned"


@pytest.mark.parametrize(
    "observed_at", ["2026-02-30", "10/03/2026", "2026-03-10T12:00:00Z", 20260310, None]
)
def test_record_outcome_refuses_an_observed_at_that_is_not_a_date(
    client: TestClient, observed_at: object
) -> None:
    response = client.post(URL, json={**CHURNED, "observed_at": observed_at})
    assert _field_errors(response) == ["observed_at"]


def test_record_outcome_refuses_a_date_in_the_future(client: TestClient) -> None:
    later = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    response = client.post(URL, json={**CHURNED, "observed_at": later})
    assert _field_errors(response) == ["observed_at"]
    assert "must not be later than" in response.json()["errors"][0]["reason"]


def test_record_outcome_names_missing_and_unknown_fields(client: TestClient) -> None:
    response = client.post(URL, json={"churn": True})
    assert sorted(_field_errors(response)) == ["churn", "churned", "observed_at"]


def test_record_outcome_of_an_unknown_customer_is_404(client: TestClient) -> None:
    response = client.post("/customers/NOPE-0000/outcome", json=CHURNED)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "No customer has the id 'NOPE-0000'."


@pytest.mark.parametrize(("scope", "status"), [("predict", 201), ("admin", 201), ("read", 403)])
def test_record_outcome_needs_the_predict_or_the_admin_scope(
    client: TestClient, key_of: dict[str, dict[str, str]], scope: str, status: int
) -> None:
    response = client.post(URL, json=CHURNED, headers=key_of[scope])
    assert response.status_code == status
    if status == 403:
        challenge = response.headers["www-authenticate"]
        assert 'error="insufficient_scope", scope="predict admin"' in challenge


def test_record_outcome_without_credentials_is_401(client: TestClient) -> None:
    response = client.post(URL, json=CHURNED, headers={"X-API-Key": ""})
    assert response.status_code == 401


def _app_on(database_url: str, artifact_dir: Path, artifact: ModelArtifact) -> TestClient:
    settings = Settings(
        model_dir=artifact_dir,
        environment="test",
        database_url=database_url,
        prediction_log_enabled=False,
        **security_settings(),
    )
    return api_client(create_app(settings, artifact))


def test_record_outcome_without_a_database_is_503(
    artifact_dir: Path, artifact: ModelArtifact
) -> None:
    with _app_on("", artifact_dir, artifact) as client:
        response = client.post(URL, json=CHURNED)
    assert response.status_code == 503
    assert "CHURN_DATABASE_URL" in response.json()["detail"]


def test_record_outcome_with_the_database_down_is_503(
    artifact_dir: Path, artifact: ModelArtifact
) -> None:
    down = f"postgresql://postgres@127.0.0.1:{free_port()}/churn"
    with _app_on(down, artifact_dir, artifact) as client:
        response = client.post(URL, json=CHURNED)
    assert response.status_code == 503
    assert response.json()["detail"] == "The database does not answer; retry in a moment."


def test_record_outcome_refuses_a_body_that_is_not_json(client: TestClient) -> None:
    response = client.post(URL, content=b"\xff{", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
