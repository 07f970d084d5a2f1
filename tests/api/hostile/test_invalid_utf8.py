"""A body that is not UTF-8 is a 4xx naming the string at fault, never a 500 (issue 16,
finding 2): on the fast path, the prediction routes and the routes FastAPI decodes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from tests.api.hostile.conftest import CUSTOMER
from tests.fixtures.requests import JSON_HEADERS

OVERLONG_SLASH = b"\xc0\xaf"
# Each is invalid UTF-8: an overlong "/", a byte that never starts a character, an encoded
# surrogate, a character cut short.
INVALID = [OVERLONG_SLASH, b"\xff", b"\xed\xa0\x80", b"\xe2\x82"]
FEATURES = json.dumps(EXAMPLE_FEATURES).encode()


def _post(client: TestClient, path: str, body: bytes, key: dict[str, str]) -> Any:
    response = client.post(path, content=body, headers={**JSON_HEADERS, **key})
    assert response.headers["content-type"] == "application/problem+json"
    return response


def _fields(response: Any) -> list[str]:
    return [error["field"] for error in response.json()["errors"]]


@pytest.mark.parametrize("invalid", INVALID)
def test_a_customer_id_not_utf8_is_422_naming_it(
    app_client: TestClient, key: dict[str, str], invalid: bytes
) -> None:
    body = b'{"customer_id": "8879' + invalid + b'", "features": ' + FEATURES + b"}"
    response = _post(app_client, "/predict", body, key)
    assert response.status_code == 422
    assert _fields(response) == ["customer_id"]
    assert response.json()["errors"][0]["reason"].startswith("Not valid UTF-8 (byte ")


def test_a_category_not_utf8_is_422_naming_it(app_client: TestClient, key: dict[str, str]) -> None:
    features = FEATURES.replace(b'"One year"', b'"One' + OVERLONG_SLASH + b'year"')
    response = _post(app_client, "/predict", b'{"features": ' + features + b"}", key)
    assert response.status_code == 422
    assert _fields(response) == ["features.contract"]


def test_a_batch_row_id_not_utf8_is_422_naming_its_row(
    app_client: TestClient, key: dict[str, str]
) -> None:
    good = b'{"customer_id": "a", "features": ' + FEATURES + b"}"
    bad = b'{"customer_id": "b' + OVERLONG_SLASH + b'", "features": ' + FEATURES + b"}"
    response = _post(app_client, "/predict/batch", b"[" + good + b"," + bad + b"]", key)
    assert response.status_code == 422
    assert _fields(response) == ["[1].customer_id"]


def test_a_key_not_utf8_names_the_body(app_client: TestClient, key: dict[str, str]) -> None:
    body = b'{"features' + OVERLONG_SLASH + b'": ' + FEATURES + b"}"
    response = _post(app_client, "/predict", body, key)
    assert response.status_code == 422
    assert _fields(response) == ["body"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/auth/keys", b'{"name": "k' + OVERLONG_SLASH + b'", "scopes": ["read"]}', "name"),
        (
            "/auth/users",
            b'{"username": "u' + OVERLONG_SLASH + b'", "password": "0123456789", '
            b'"scopes": ["read"]}',
            "username",
        ),
        (
            f"/customers/{CUSTOMER}/outcome",
            b'{"churned": true, "observed_at": "2024-01-0' + OVERLONG_SLASH + b'"}',
            "observed_at",
        ),
    ],
)
def test_a_field_not_utf8_is_422_naming_it_on_routes_fastapi_decodes(
    app_client: TestClient, key: dict[str, str], path: str, body: bytes, field: str
) -> None:
    response = _post(app_client, path, body, key)
    assert response.status_code == 422
    assert _fields(response) == [field]


def test_a_version_not_utf8_is_422_naming_it(app_client: TestClient, key: dict[str, str]) -> None:
    body = b'{"version": "v' + OVERLONG_SLASH + b'"}'
    response = app_client.put("/model/champion", content=body, headers={**JSON_HEADERS, **key})
    assert response.status_code == 422
    assert _fields(response) == ["version"]


def test_a_login_not_utf8_is_422_naming_the_field(app_client: TestClient) -> None:
    body = b'{"username": "u' + OVERLONG_SLASH + b'", "password": "0123456789"}'
    response = _post(app_client, "/auth/login", body, {})
    assert response.status_code == 422
    assert _fields(response) == ["username"]


@pytest.mark.parametrize("suffix", ["predict", "outcome"])
def test_a_customer_id_in_the_path_not_utf8_is_404(
    app_client: TestClient, key: dict[str, str], suffix: str
) -> None:
    body = {"churned": True, "observed_at": "2024-01-01"} if suffix == "outcome" else None
    response = app_client.post(f"/customers/a%C0%AF/{suffix}", json=body, headers=key)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
