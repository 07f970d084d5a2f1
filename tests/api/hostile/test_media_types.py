"""Only JSON bodies are read: anything else is a 415 problem document before any route reads
it (issue 16, finding 10), which also refuses browsers' cross-site "simple" requests."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from tests.api.hostile.conftest import CUSTOMER

ROW = {"customer_id": "8879-ZKJOF", "features": EXAMPLE_FEATURES}
JSON_BODY_ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/predict", ROW),
    ("POST", "/predict/batch", [ROW]),
    ("POST", "/auth/keys", {"name": "k", "scopes": ["read"]}),
    ("POST", "/auth/users", {"username": "u", "password": "0123456789", "scopes": ["read"]}),
    ("POST", f"/customers/{CUSTOMER}/outcome", {"churned": True, "observed_at": "2024-01-01"}),
    ("PUT", "/model/champion", {"version": "v1"}),
    ("POST", "/auth/login", {"username": "u", "password": "0123456789"}),
]
NOT_JSON = ["text/plain", "application/x-www-form-urlencoded", "application/xml", None]


def _send(
    client: TestClient, method: str, path: str, body: Any, media_type: str | None, **headers: str
) -> Any:
    if media_type is not None:
        headers["Content-Type"] = media_type
    return client.request(method, path, content=json.dumps(body).encode(), headers=headers)


@pytest.mark.parametrize("media_type", NOT_JSON)
@pytest.mark.parametrize(("method", "path", "body"), JSON_BODY_ROUTES)
def test_a_json_body_sent_as_another_media_type_is_415(
    app_client: TestClient,
    key: dict[str, str],
    method: str,
    path: str,
    body: Any,
    media_type: str | None,
) -> None:
    if path == "/auth/login" and media_type == "application/x-www-form-urlencoded":
        pytest.skip("the login takes the OAuth2 password form")
    response = _send(app_client, method, path, body, media_type, **key)
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["title"] == "Unsupported Media Type"
    assert problem["detail"].startswith("Send the body as JSON")


@pytest.mark.parametrize(
    "media_type",
    ["application/json", "application/json; charset=utf-8", "application/vnd.churn+json"],
)
@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_json_media_types_are_answered(
    app_client: TestClient, key: dict[str, str], path: str, media_type: str
) -> None:
    body = ROW if path == "/predict" else [ROW]
    response = _send(app_client, "POST", path, body, media_type, **key)
    assert response.status_code == 200


def test_json_in_another_charset_is_415(app_client: TestClient, key: dict[str, str]) -> None:
    response = _send(
        app_client, "POST", "/predict", ROW, "application/json; charset=latin-1", **key
    )
    assert response.status_code == 415


def test_unauthenticated_text_plain_is_415_before_the_credentials_are_read(
    app_client: TestClient,
) -> None:
    response = _send(app_client, "POST", "/predict", ROW, "text/plain")
    assert response.status_code == 415


def test_the_login_still_takes_the_password_form(app_client: TestClient) -> None:
    response = app_client.post("/auth/login", data={"username": "nobody", "password": "x" * 8})
    assert response.status_code == 401


def test_a_request_without_a_body_needs_no_content_type(
    app_client: TestClient, key: dict[str, str]
) -> None:
    response = app_client.post(f"/customers/{CUSTOMER}/predict", headers=key)
    assert response.status_code == 200


def test_the_openapi_document_declares_the_413_and_415_of_every_body(
    app_client: TestClient,
) -> None:
    document = app_client.get("/openapi.json").json()
    operations = [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
    ]
    assert {(method, path) for path, method, _ in operations} >= {
        (method.lower(), path.replace(CUSTOMER, "{customer_id}"))
        for method, path, _ in JSON_BODY_ROUTES
        if not path.startswith("/model/")
    }
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    v2_error = {"application/json": {"schema": {"$ref": "#/components/schemas/V2Error"}}}
    for path, method, operation in operations:
        if path.startswith("/v2/"):
            # The Open Inference Protocol takes binary bodies (no 415) and refuses in its own
            # {"error"} shape.
            assert "415" not in operation["responses"], (method, path)
            assert operation["responses"]["413"]["content"] == v2_error, (method, path)
            continue
        for status in ("413", "415"):
            assert operation["responses"][status]["content"] == problem, (method, path, status)
