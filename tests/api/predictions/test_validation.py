"""Every way a `/predict` body can be refused, with the exact problem document."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from churn_mlops.core.request_models import CUSTOMER_ID_PATTERN
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from tests.fixtures.requests import JSON_HEADERS


def _problem(*errors: tuple[str, str]) -> dict[str, Any]:
    fields = sorted({field for field, _ in errors})
    noun = "field is" if len(fields) == 1 else "fields are"
    return {
        "type": "about:blank",
        "title": "Unprocessable Content",
        "status": 422,
        "detail": f"{len(fields)} {noun} invalid: {', '.join(fields)}",
        "errors": [{"field": field, "reason": reason} for field, reason in errors],
    }


def _with(**changes: Any) -> dict[str, Any]:
    return {"features": {**EXAMPLE_FEATURES, **changes}}


def _without(name: str) -> dict[str, Any]:
    return {"features": {k: v for k, v in EXAMPLE_FEATURES.items() if k != name}}


REFUSALS = {
    "string for an integer": (
        _with(tenure="41"),
        [("features.tenure", "Input should be a valid integer")],
    ),
    "fractional integer": (
        _with(tenure=4.5),
        [("features.tenure", "Input should be a valid integer")],
    ),
    "tenure above range": (
        _with(tenure=121),
        [("features.tenure", "Input should be less than or equal to 120")],
    ),
    "negative charge": (
        _with(monthly_charges=-0.01),
        [("features.monthly_charges", "Input should be greater than or equal to 0")],
    ),
    "string for a number": (
        _with(total_charges="3320.75"),
        [("features.total_charges", "Input should be a valid number")],
    ),
    "unknown category": (
        _with(internet_service="Satellite"),
        [("features.internet_service", "Input should be 'DSL', 'Fiber optic' or 'No'")],
    ),
    "category in the wrong case": (
        _with(contract="one year"),
        [
            (
                "features.contract",
                "Input should be 'Month-to-month', 'One year' or 'Two year'",
            )
        ],
    ),
    "senior citizen outside 0/1": (
        _with(senior_citizen=2),
        [("features.senior_citizen", "Input should be 0 or 1")],
    ),
    "number for a category": (
        _with(gender=1),
        [("features.gender", "Input should be 'Female' or 'Male'")],
    ),
    "missing field": (
        _without("payment_method"),
        [("features.payment_method", "Field required")],
    ),
    "missing nullable field": (
        _without("total_charges"),
        [("features.total_charges", "Field required")],
    ),
    "extra feature": (
        _with(age=42),
        [("features.age", "Extra inputs are not permitted")],
    ),
    "extra top-level field": (
        {**_with(), "model": "other"},
        [("model", "Extra inputs are not permitted")],
    ),
    "missing features": (
        {"customer_id": "x"},
        [("features", "Field required")],
    ),
    "empty customer id": (
        {**_with(), "customer_id": ""},
        [("customer_id", "String should have at least 1 character")],
    ),
    "customer id with a NUL, which PostgreSQL cannot store": (
        {**_with(), "customer_id": "8879\x00ZKJOF"},
        [("customer_id", f"String should match pattern '{CUSTOMER_ID_PATTERN}'")],
    ),
    "customer id ending in a newline": (
        {**_with(), "customer_id": "8879-ZKJOF\n"},
        [("customer_id", f"String should match pattern '{CUSTOMER_ID_PATTERN}'")],
    ),
    "features not an object": (
        {"features": [1, 2]},
        [("features", "Input should be an object")],
    ),
    "body not an object": (
        [],
        [("body", "Input should be an object")],
    ),
    "two bad fields": (
        _with(tenure=-1, partner="Maybe"),
        [
            ("features.partner", "Input should be 'No' or 'Yes'"),
            ("features.tenure", "Input should be greater than or equal to 0"),
        ],
    ),
}


@pytest.mark.parametrize(("body", "errors"), REFUSALS.values(), ids=REFUSALS.keys())
def test_predict_refuses_with_exact_problem(
    client: TestClient, body: Any, errors: list[tuple[str, str]]
) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == _problem(*errors)


@pytest.mark.parametrize(
    ("token", "field"),
    [
        ("NaN", "tenure"),
        ("NaN", "monthly_charges"),
        ("Infinity", "total_charges"),
        ("-Infinity", "monthly_charges"),
    ],
)
def test_predict_refuses_nan_and_infinity(client: TestClient, token: str, field: str) -> None:
    others = json.dumps({k: v for k, v in EXAMPLE_FEATURES.items() if k != field})
    body = f'{{"features": {{{others[1:-1]}, "{field}": {token}}}}}'
    response = client.post("/predict", content=body.encode(), headers=JSON_HEADERS)
    assert response.status_code == 422
    expected = (
        "Input should be a valid integer"
        if field == "tenure"
        else ("Input should be a finite number")
    )
    assert response.json() == _problem((f"features.{field}", expected))


def test_broken_json_names_the_body(client: TestClient) -> None:
    response = client.post(
        "/predict", content=b'{"features": {"gender": "Fem', headers=JSON_HEADERS
    )
    assert response.status_code == 422
    assert response.json() == _problem(
        ("body", "Invalid JSON: EOF while parsing a string at line 1 column 28")
    )


def test_error_bodies_never_echo_the_rejected_value(client: TestClient) -> None:
    response = client.post("/predict", json=_with(internet_service="secret-value-123"))
    assert "secret-value-123" not in response.text
