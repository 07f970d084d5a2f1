"""A model trained on other columns (the generated non-Telco data) served with no code change:
its answers are the offline model's on the fast path and on the pydantic path, bad rows are
refused per field, its OpenAPI document and `GET /model/schema` describe its features."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from churn_mlops.api.app import create_app
from churn_mlops.data import Dataset
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.compiled import PARITY_TOLERANCE
from churn_mlops.settings import Settings
from tests.fixtures.own_data import OWN_FEATURES, PLANS, REGIONS
from tests.fixtures.requests import prediction_bodies
from tests.fixtures.security import api_client

ROWS = 40


def offline(artifact: ModelArtifact, rows: list[dict[str, Any]]) -> tuple[list[float], Any]:
    """The compiled forest's and the sklearn estimator's probabilities of `rows`."""
    columns = {name: [row[name] for row in rows] for name in OWN_FEATURES}
    encoded = artifact.encoder.encode_columns(columns)
    return artifact.forest.predict(encoded).tolist(), artifact.estimator.predict_proba(encoded)[
        :, 1
    ]


def _features(body: dict[str, Any]) -> dict[str, Any]:
    features: dict[str, Any] = body["features"]
    return features


@pytest.fixture(scope="module")
def bodies(own_dataset: Dataset) -> list[dict[str, Any]]:
    return prediction_bodies(own_dataset, ROWS, start=100)


def test_predict_answers_the_offline_models_probability(
    own_client: TestClient, own_artifact: ModelArtifact, bodies: list[dict[str, Any]]
) -> None:
    forest, estimator = offline(own_artifact, [_features(b) for b in bodies])
    for body, expected, sklearn in zip(bodies, forest, estimator, strict=True):
        response = own_client.post("/predict", json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["customer_id"] == body["customer_id"]
        assert answer["model_version"] == own_artifact.version
        assert answer["churn_probability"] == pytest.approx(expected, abs=1e-12)
        assert answer["churn_probability"] == pytest.approx(sklearn, abs=PARITY_TOLERANCE)
        assert answer["will_churn"] == (answer["churn_probability"] >= own_artifact.threshold)


def test_predict_batch_answers_the_offline_models_probabilities(
    own_client: TestClient, own_artifact: ModelArtifact, bodies: list[dict[str, Any]]
) -> None:
    forest, estimator = offline(own_artifact, [_features(b) for b in bodies])
    response = own_client.post("/predict/batch", json=bodies)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["customer_id"] for p in predictions] == [b["customer_id"] for b in bodies]
    served = [p["churn_probability"] for p in predictions]
    assert served == pytest.approx(forest, abs=1e-12)
    assert served == pytest.approx(estimator.tolist(), abs=PARITY_TOLERANCE)


def test_the_fastapi_route_answers_as_the_fast_path(
    slow_path_client: TestClient, own_artifact: ModelArtifact, bodies: list[dict[str, Any]]
) -> None:
    forest, _ = offline(own_artifact, [_features(b) for b in bodies[:5]])
    served = [
        slow_path_client.post("/predict", json=body).json()["churn_probability"]
        for body in bodies[:5]
    ]
    assert served == pytest.approx(forest, abs=1e-12)


def test_a_body_msgspec_refuses_is_scored_on_the_pydantic_path(
    own_client: TestClient, own_artifact: ModelArtifact, bodies: list[dict[str, Any]]
) -> None:
    # 12.0 seats: JSON Schema's integer, which msgspec refuses and pydantic accepts.
    lax = [
        {**b, "features": {**_features(b), "seats": float(_features(b)["seats"])}} for b in bodies
    ]
    forest, _ = offline(own_artifact, [_features(b) for b in bodies])
    single = own_client.post("/predict", json=lax[0])
    assert single.status_code == 200, single.text
    assert single.json()["churn_probability"] == pytest.approx(forest[0], abs=1e-12)
    batch = own_client.post("/predict/batch", json=lax)
    assert batch.status_code == 200, batch.text
    served = [p["churn_probability"] for p in batch.json()["predictions"]]
    assert served == pytest.approx(forest, abs=1e-12)


def test_an_unseen_plan_is_scored_as_a_missing_plan(
    own_client: TestClient, own_artifact: ModelArtifact, bodies: list[dict[str, Any]]
) -> None:
    features = {**_features(bodies[0]), "plan": "platinum"}
    assert "platinum" not in PLANS
    encoded = own_artifact.encoder.encode_row({**features, "plan": None})
    assert math.isnan(encoded[0, OWN_FEATURES.index("plan")])
    expected = float(own_artifact.forest.predict(encoded)[0])
    for path, body in (
        ("/predict", {"features": features}),
        ("/predict/batch", [{"features": features}]),
    ):
        response = own_client.post(path, json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        answer = answer["predictions"][0] if path.endswith("batch") else answer
        assert answer["churn_probability"] == pytest.approx(expected, abs=1e-12)


REFUSED = {
    "unknown field": ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
    "wrong kind": ({"seats": "12"}, "seats", "Input should be a valid integer"),
    "seats out of range": (
        {"seats": 100_001},
        "seats",
        "Input should be less than or equal to 100000",
    ),
    "unseen region": ({"region": "region-99"}, "region", "Input should be 'region-00', "),
    "null where not nullable": (
        {"monthly_spend": None},
        "monthly_spend",
        "Input should be a valid number",
    ),
    "boolean as a string": (
        {"has_support_contract": "yes"},
        "has_support_contract",
        "Input should be a valid boolean",
    ),
}


@pytest.mark.parametrize(("changes", "field", "reason"), REFUSED.values(), ids=list(REFUSED))
def test_a_bad_row_is_refused_naming_its_field(
    own_client: TestClient,
    bodies: list[dict[str, Any]],
    changes: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    bad = {"features": {**_features(bodies[0]), **changes}}
    single = own_client.post("/predict", json=bad)
    assert single.status_code == 422
    assert single.headers["content-type"] == "application/problem+json"
    problem = single.json()
    assert problem["detail"] == f"1 field is invalid: features.{field}"
    assert [e["field"] for e in problem["errors"]] == [f"features.{field}"]
    assert problem["errors"][0]["reason"].startswith(reason)
    batch = own_client.post("/predict/batch", json=[bodies[1], bad])
    assert batch.status_code == 422
    assert [e["field"] for e in batch.json()["errors"]] == [f"[1].features.{field}"]


def test_a_telco_body_is_refused_naming_the_fields_it_lacks_and_has_extra(
    own_client: TestClient,
) -> None:
    from churn_mlops.data.telco_example import EXAMPLE_FEATURES

    response = own_client.post("/predict", json={"features": EXAMPLE_FEATURES})
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert {f"features.{name}" for name in OWN_FEATURES} <= fields
    assert "features.tenure" in fields


def test_openapi_lists_the_models_features_with_its_example(
    own_client: TestClient, own_artifact: ModelArtifact
) -> None:
    document = own_client.get("/openapi.json").json()
    components = document["components"]["schemas"]
    features = components["CustomerFeatures"]
    assert list(features["properties"]) == list(OWN_FEATURES)
    assert features["examples"] == [dict(own_artifact.schema.example)]
    assert features["properties"]["region"]["enum"] == REGIONS
    assert features["properties"]["seats"]["maximum"] == 100_000
    assert features["properties"]["seats"]["description"] == "Paid seats on the account."
    assert features["properties"]["has_support_contract"]["type"] == "boolean"
    assert set(features["required"]) == set(OWN_FEATURES)
    request = components["PredictRequest"]
    assert request["examples"] == [
        {"customer_id": own_artifact.schema.example_id, "features": features["examples"][0]}
    ]


def test_model_schema_is_the_served_models_schema(
    own_client: TestClient, own_artifact: ModelArtifact
) -> None:
    response = own_client.get("/model/schema")
    assert response.status_code == 200
    schema = own_artifact.schema
    assert response.json() == {**schema.to_dict(), "sha256": schema.sha256}
    assert response.json()["sha256"] == own_artifact.info.schema_sha256
    assert [f["name"] for f in response.json()["features"]] == list(OWN_FEATURES)


def test_the_openapi_documents_the_schema_route(own_client: TestClient) -> None:
    document = own_client.get("/openapi.json").json()
    operation = document["paths"]["/model/schema"]["get"]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/FeatureSchemaDocument"}
    assert {"401", "403", "503"} <= set(operation["responses"])


def test_a_full_batch_of_training_rows_equals_the_offline_model(
    own_client: TestClient, own_artifact: ModelArtifact, own_dataset: Dataset
) -> None:
    bodies = prediction_bodies(own_dataset, 50)
    forest = own_artifact.forest.predict(
        own_artifact.encoder.encode_columns(own_dataset.subset(range(50)).columns)
    )
    response = own_client.post("/predict/batch", json=bodies)
    assert response.status_code == 200
    served = np.array([p["churn_probability"] for p in response.json()["predictions"]])
    np.testing.assert_allclose(served, forest, rtol=0, atol=1e-12)


def test_model_schema_is_503_until_a_model_is_served(own_settings: Settings) -> None:
    # No `with`: the lifespan that loads the model has not run.
    client = api_client(create_app(own_settings))
    response = client.get("/model/schema")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "The model is still loading; retry in a moment."


def test_model_schema_needs_the_read_scope(
    own_settings: Settings, own_artifact: ModelArtifact
) -> None:
    with api_client(create_app(own_settings, own_artifact), scopes=["predict"]) as client:
        assert client.get("/model/schema").status_code == 403
        assert client.get("/model").status_code == 403
