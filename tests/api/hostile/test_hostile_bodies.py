"""Hostile bodies are refused for the cost of reading them once (issue 16, finding 1).

31 KB of escaped quotes once held a worker's event loop for 3 s before its 422: the JSON depth
check went back over the rest of the body from every quote of an unterminated string. These
tests assert what is answered, not how fast; a quadratic check would not finish within their
timeouts (10 MB of escaped quotes: hours).
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from churn_mlops.data.telco_example import FEATURE_NAMES
from churn_mlops.security.limits import SMALL_BODY_BYTES
from tests.api.hostile.conftest import CUSTOMER
from tests.fixtures.requests import JSON_HEADERS
from tests.fixtures.telco_decoding import MAX_MEMBERS
from tests.unit.security.test_limits_linear import hostile_bodies

pytestmark = pytest.mark.timeout(120)

TEN_MB = 10 * 1024 * 1024 - 1024
ESCAPED_QUOTES_31_KB = b'"' + b'\\"' * 15_500
SMALL_BODY_ROUTES = [
    ("POST", "/predict"),
    ("POST", "/auth/login"),
    ("POST", "/auth/keys"),
    ("POST", "/auth/users"),
    ("POST", f"/customers/{CUSTOMER}/outcome"),
    ("PUT", "/model/champion"),
]


@pytest.mark.parametrize(("method", "path"), SMALL_BODY_ROUTES)
def test_the_31_kb_body_of_escaped_quotes_is_too_large_for_a_small_body_route(
    app_client: TestClient, key: dict[str, str], method: str, path: str
) -> None:
    headers = JSON_HEADERS if path == "/auth/login" else {**JSON_HEADERS, **key}
    response = app_client.request(method, path, content=ESCAPED_QUOTES_31_KB, headers=headers)
    assert response.status_code == 413
    assert response.json()["detail"] == (
        f"The request body is larger than {SMALL_BODY_BYTES} bytes."
    )


# Within the small limit, the string is read once: by the shape check of a prediction body
# (no field takes a string that long), by the parser of a login.
@pytest.mark.parametrize(("path", "status"), [("/predict", 413), ("/auth/login", 422)])
def test_escaped_quotes_up_to_the_small_limit_are_refused(
    app_client: TestClient, key: dict[str, str], path: str, status: int
) -> None:
    body = b'"' + b'\\"' * ((SMALL_BODY_BYTES - 1) // 2)
    response = app_client.post(path, content=body, headers={**JSON_HEADERS, **key})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("name", list(hostile_bodies(64)))
def test_ten_megabytes_of_a_hostile_shape_are_refused_by_the_batch(
    app_client: TestClient, key: dict[str, str], name: str
) -> None:
    body = hostile_bodies(TEN_MB)[name]
    response = app_client.post("/predict/batch", content=body, headers={**JSON_HEADERS, **key})
    assert response.status_code in (413, 422)
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(("method", "path"), SMALL_BODY_ROUTES)
def test_ten_megabytes_to_a_small_body_route_are_refused_before_anything_reads_them(
    app_client: TestClient, method: str, path: str
) -> None:
    body = hostile_bodies(TEN_MB)["one object of many keys"]
    response = app_client.request(method, path, content=body, headers=JSON_HEADERS)
    assert response.status_code == 413


def test_a_batch_of_invalid_rows_names_the_first_invalid_row_only(
    app_client: TestClient, key: dict[str, str]
) -> None:
    rows = [{"features": {}}] * 10_000
    response = app_client.post("/predict/batch", json=rows, headers=key)
    assert response.status_code == 422
    fields = [error["field"] for error in response.json()["errors"]]
    assert fields == [f"[0].features.{name}" for name in FEATURE_NAMES]


def test_an_object_of_more_members_than_any_request_has_is_413(
    app_client: TestClient, key: dict[str, str]
) -> None:
    row = {"features": {}, **{f"extra{i}": 1 for i in range(MAX_MEMBERS)}}
    response = app_client.post("/predict/batch", json=[row], headers=key)
    assert response.status_code == 413
    assert response.json()["detail"] == (
        f"An object of the JSON body has {MAX_MEMBERS + 1} members; a request's objects have "
        f"at most {len(FEATURE_NAMES)}."
    )


def test_more_values_than_a_full_batch_holds_is_413(
    app_client: TestClient, key: dict[str, str]
) -> None:
    response = app_client.post("/predict/batch", json=[[]] * 300_000, headers=key)
    assert response.status_code == 413
    assert response.json()["detail"] == (
        "A batch holds at most 10000 rows, and this body holds more values than that many can; "
        "split it into several requests."
    )


def test_a_string_longer_than_any_field_takes_is_413(
    app_client: TestClient, key: dict[str, str]
) -> None:
    body = {"customer_id": "x" * 5000, "features": {}}
    response = app_client.post("/predict", json=body, headers=key)
    assert response.status_code == 413
    assert response.json()["detail"] == (
        "The JSON body holds a string of 5000 bytes; no field of a request takes one that long."
    )


def test_a_few_mistakes_still_name_their_fields(
    app_client: TestClient, key: dict[str, str]
) -> None:
    body = {"features": {}, "model": "other", "version": 2}
    response = app_client.post("/predict", json=body, headers=key)
    assert response.status_code == 422
    assert {"model", "version", "features.tenure"} <= {
        error["field"] for error in response.json()["errors"]
    }


@pytest.mark.parametrize(("method", "path"), [("POST", "/auth/keys"), ("PUT", "/model/champion")])
def test_nesting_too_deep_for_the_routes_fastapi_decodes_is_413(
    app_client: TestClient, key: dict[str, str], method: str, path: str
) -> None:
    body = b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = app_client.request(method, path, content=body, headers={**JSON_HEADERS, **key})
    assert response.status_code == 413
    assert response.json()["detail"] == "The JSON body nests arrays and objects too deep."
