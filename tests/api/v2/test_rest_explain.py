"""Reason codes on the V2 infer route: `parameters.explain` (or `reasons` among the outputs)
adds a BYTES output of one JSON document per row, the reasons `/predict/batch` gives."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from tritonclient.http import (  # type: ignore[import-untyped]
    InferenceServerClient,
    InferRequestedOutput,
    InferResult,
)

from tests.api.v2.test_rest import INFER, triton_inputs


def explained_infer(
    client: TestClient,
    rows: list[dict[str, Any]],
    *,
    binary: bool,
    parameters: dict[str, Any] | None = None,
    outputs: list[InferRequestedOutput] | None = None,
) -> tuple[InferResult, list[dict[str, Any]]]:
    body, json_size = InferenceServerClient.generate_request_body(
        triton_inputs(rows, binary=binary), outputs=outputs, parameters=parameters
    )
    headers = {} if json_size is None else {"Inference-Header-Content-Length": str(json_size)}
    response = client.post(INFER, content=body, headers=headers)
    assert response.status_code == 200, response.text
    result = InferResult.from_response_body(
        response.content, header_length=response.headers.get("inference-header-content-length")
    )
    reasons = [json.loads(item) for item in result.as_numpy("reasons").tolist()]
    return result, reasons


def predict_batch_explained(client: TestClient, rows: list[dict[str, Any]]) -> list[Any]:
    response = client.post(
        "/predict/batch",
        content=orjson.dumps([{"features": r, "explain": True} for r in rows]),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    return [p["reasons"] for p in response.json()["predictions"]]


@pytest.mark.parametrize("binary", [True, False])
def test_explain_parameter_adds_each_rows_reasons(
    client: TestClient, rows: list[dict[str, Any]], binary: bool
) -> None:
    sample = rows[:20]
    result, reasons = explained_infer(client, sample, binary=binary, parameters={"explain": True})
    expected = predict_batch_explained(client, sample)
    assert result.as_numpy("churn_probability") is not None
    assert len(reasons) == len(sample)
    for got, want, row in zip(reasons, expected, sample, strict=True):
        assert (got["base_value"], got["log_odds"]) == (want["base_value"], want["log_odds"])
        assert [(f["feature"], f["contribution"], f["direction"]) for f in got["features"]] == [
            (f["feature"], f["contribution"], f["direction"]) for f in want["features"]
        ]
        # The value the model read: the category or integer as sent, a float32 number at its
        # shortest (the shipped data's charges have two decimals), a missing one null.
        for feature in got["features"]:
            assert feature["value"] == row[feature["feature"]]


def test_reasons_asked_as_the_only_output_come_alone(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    sample = rows[:3]
    result, reasons = explained_infer(
        client, sample, binary=True, outputs=[InferRequestedOutput("reasons", binary_data=True)]
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == ["reasons"]
    assert [r["log_odds"] for r in reasons] == [
        r["log_odds"] for r in predict_batch_explained(client, sample)
    ]


def test_explain_that_is_not_a_boolean_is_a_v2_error(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    body, _ = InferenceServerClient.generate_request_body(
        triton_inputs(rows[:1], binary=False), parameters={"explain": "yes"}
    )
    response = client.post(INFER, content=body)
    assert response.status_code == 400
    assert response.json() == {"error": "parameters.explain must be true or false"}
