"""`"explain": true`: reason codes in `/predict` and `/predict/batch` answers, exact, as sent,
the top CHURN_EXPLAIN_TOP_K; answers without it unchanged to the byte; refusals."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from churn_mlops.api.app import create_app
from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import EXAMPLE_FEATURES, FEATURE_NAMES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings
from tests.fixtures.requests import JSON_HEADERS, prediction_bodies
from tests.fixtures.security import api_client, security_settings

EXACT = 1e-9


def _contributions(artifact: ModelArtifact, features: dict[str, Any]) -> dict[str, float]:
    assert artifact.explainer is not None
    row = artifact.encoder.encode_row(features)
    return dict(zip(FEATURE_NAMES, artifact.explainer.explain(row)[0].tolist(), strict=True))


def _check_reasons(
    reasons: dict[str, Any], features: dict[str, Any], artifact: ModelArtifact, top_k: int
) -> None:
    expected = _contributions(artifact, features)
    assert artifact.explainer is not None
    assert reasons["base_value"] == artifact.explainer.base_value
    assert abs(reasons["log_odds"] - (sum(expected.values()) + reasons["base_value"])) <= EXACT
    listed = reasons["features"]
    ranked = sorted(expected, key=lambda name: -abs(expected[name]))
    assert [reason["feature"] for reason in listed] == ranked[:top_k]
    for reason in listed:
        name = reason["feature"]
        assert reason["value"] == features[name]  # as sent
        assert reason["contribution"] == expected[name]
        assert reason["direction"] == ("raises" if expected[name] > 0 else "lowers")


def test_an_explained_answer_lists_the_top_features_exactly(
    client: TestClient, artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    for body in prediction_bodies(dataset, 25):
        response = client.post("/predict", json={**body, "explain": True})
        assert response.status_code == 200
        answer = response.json()
        _check_reasons(answer["reasons"], body["features"], artifact, top_k=5)
        # The reasons explain the answered probability: it is the sigmoid of their log-odds.
        probability = 1.0 / (1.0 + math.exp(-answer["reasons"]["log_odds"]))
        assert answer["churn_probability"] == pytest.approx(probability, abs=1e-12)


def test_values_are_echoed_as_sent_nulls_included(
    client: TestClient, artifact: ModelArtifact
) -> None:
    features = {**EXAMPLE_FEATURES, "total_charges": None, "tenure": 1}
    answer = client.post("/predict", json={"features": features, "explain": True}).json()
    _check_reasons(answer["reasons"], features, artifact, top_k=5)
    listed = {reason["feature"]: reason["value"] for reason in answer["reasons"]["features"]}
    assert listed.get("tenure", 1) == 1


def test_without_explain_the_answer_is_unchanged_to_the_byte(
    client: TestClient, artifact: ModelArtifact
) -> None:
    body = {"customer_id": "C-1", "features": EXAMPLE_FEATURES}
    plain = client.post("/predict", json=body)
    explicit_false = client.post("/predict", json={**body, "explain": False})
    probability = plain.json()["churn_probability"]
    expected = orjson.dumps(
        {
            "customer_id": "C-1",
            "churn_probability": probability,
            "will_churn": probability >= artifact.threshold,
            "model_version": artifact.version,
            "cached": False,
        }
    )
    assert plain.content == expected
    assert explicit_false.content == expected.replace(b'"cached":false', b'"cached":true')


def test_an_explained_request_after_a_cached_answer_still_gets_reasons(
    client: TestClient, artifact: ModelArtifact
) -> None:
    body = {"features": {**EXAMPLE_FEATURES, "tenure": 7}}
    first = client.post("/predict", json=body).json()
    explained = client.post("/predict", json={**body, "explain": True}).json()
    again = client.post("/predict", json=body).json()

    assert explained["cached"] is True
    assert explained["churn_probability"] == first["churn_probability"]
    _check_reasons(explained["reasons"], body["features"], artifact, top_k=5)
    assert "reasons" not in again  # nor is an explained answer served to a plain request


def test_a_batch_explains_only_the_rows_that_ask(
    client: TestClient, artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    bodies = prediction_bodies(dataset, 50, start=100)  # the fixture allows 50 rows
    plain = client.post("/predict/batch", json=bodies).json()["predictions"]
    asked = {0, 7, 31, 49}
    mixed = [{**body, "explain": True} if i in asked else body for i, body in enumerate(bodies)]

    answers = client.post("/predict/batch", json=mixed).json()["predictions"]

    for i, (answer, before) in enumerate(zip(answers, plain, strict=True)):
        reasons = answer.pop("reasons", None)
        assert answer == {**before, "cached": True}
        if i in asked:
            assert reasons is not None
            _check_reasons(reasons, bodies[i]["features"], artifact, top_k=5)
        else:
            assert reasons is None


def test_top_k_follows_the_setting(
    artifact_dir: Path, artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    settings = Settings(
        model_dir=artifact_dir, explain_top_k=2, environment="test", **security_settings()
    )
    [body] = prediction_bodies(dataset, 1, start=3)
    with api_client(create_app(settings, artifact)) as client:
        single = client.post("/predict", json={**body, "explain": True}).json()
        [batch] = client.post("/predict/batch", json=[{**body, "explain": True}]).json()[
            "predictions"
        ]
    _check_reasons(single["reasons"], body["features"], artifact, top_k=2)
    assert batch["reasons"] == single["reasons"]


@pytest.mark.parametrize("value", [1, "true", None, [True]])
def test_explain_must_be_a_boolean(client: TestClient, value: Any) -> None:
    body = {"features": EXAMPLE_FEATURES, "explain": value}
    single = client.post("/predict", json=body)
    batch = client.post("/predict/batch", json=[{"features": EXAMPLE_FEATURES}, body])

    assert single.status_code == 422
    assert single.headers["content-type"] == "application/problem+json"
    assert single.json()["errors"] == [
        {"field": "explain", "reason": "Input should be a valid boolean"}
    ]
    assert batch.status_code == 422
    assert [e["field"] for e in batch.json()["errors"]] == ["[1].explain"]


def test_a_model_without_explanation_data_refuses_explain_with_409(
    settings: Settings, artifact: ModelArtifact
) -> None:
    older = replace(artifact, explainer_bytes=None)  # as a model made before explainers
    assert older.explainer is None
    body = {"features": EXAMPLE_FEATURES}
    with api_client(create_app(settings, older)) as client:
        plain = client.post("/predict", json=body)
        single = client.post("/predict", json={**body, "explain": True})
        batch = client.post("/predict/batch", json=[body, {**body, "explain": True}])

    assert plain.status_code == 200
    for refused in (single, batch):
        assert refused.status_code == 409
        assert refused.headers["content-type"] == "application/problem+json"
        detail = refused.json()["detail"]
        assert "no explanation data" in detail
        assert "retrain" in detail


def test_explain_through_the_fastapi_route_too(artifact_dir: Path, artifact: ModelArtifact) -> None:
    settings = Settings(
        model_dir=artifact_dir,
        fast_predict_enabled=False,
        environment="test",
        **security_settings(),
    )
    body = orjson.dumps({"features": EXAMPLE_FEATURES, "explain": True})
    with api_client(create_app(settings, artifact)) as client:
        answer = client.post("/predict", content=body, headers=JSON_HEADERS).json()
    _check_reasons(answer["reasons"], EXAMPLE_FEATURES, artifact, top_k=5)


def test_the_openapi_document_describes_explain_and_reasons(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert schemas["PredictRequest"]["properties"]["explain"]["type"] == "boolean"
    reasons = schemas["PredictResponse"]["properties"]["reasons"]
    assert {"$ref": "#/components/schemas/Reasons"} in reasons["anyOf"]
    example = schemas["Reasons"]["examples"][0]
    assert {r["direction"] for r in example["features"]} <= {"raises", "lowers"}
    assert "409" in document["paths"]["/predict"]["post"]["responses"]


def test_reasons_of_a_batch_equal_the_kernel_in_one_call(
    client: TestClient, artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    bodies = [{**body, "explain": True} for body in prediction_bodies(dataset, 40)]
    answers = client.post("/predict/batch", json=bodies).json()["predictions"]
    assert artifact.explainer is not None
    rows = artifact.encoder.encode_columns(
        {name: [b["features"][name] for b in bodies] for name in FEATURE_NAMES}
    )
    log_odds = artifact.explainer.explain(rows).sum(axis=1) + artifact.explainer.base_value
    served = np.array([a["reasons"]["log_odds"] for a in answers])
    assert np.max(np.abs(served - log_odds)) <= EXACT
