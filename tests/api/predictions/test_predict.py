from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.model.artifact import ModelArtifact
from tests.fixtures.requests import prediction_bodies


def _model_probabilities(
    artifact: ModelArtifact, dataset: TelcoDataset, rows: slice
) -> list[float]:
    subset = dataset.subset(range(len(dataset))[rows])
    x = artifact.encoder.encode_columns(subset.columns)
    return [float(p) for p in artifact.estimator.predict_proba(x)[:, 1]]


def test_predict_returns_the_artifact_models_probability(
    client: TestClient, artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    bodies = prediction_bodies(dataset, 20)
    expected = _model_probabilities(artifact, dataset, slice(0, 20))
    for body, probability in zip(bodies, expected, strict=True):
        response = client.post("/predict", json=body)
        assert response.status_code == 200
        served = response.json()["churn_probability"]
        # The API scores with the compiled forest, which matches the estimator within 1e-5.
        assert served == pytest.approx(probability, abs=1e-5)
        assert response.json() == {
            "customer_id": body["customer_id"],
            "churn_probability": served,
            "will_churn": served >= artifact.threshold,
            "model_version": artifact.version,
            "cached": False,
        }


def test_predict_without_customer_id_answers_null(client: TestClient) -> None:
    response = client.post("/predict", json={"features": EXAMPLE_FEATURES})
    assert response.status_code == 200
    assert response.json()["customer_id"] is None


def test_predict_accepts_null_total_charges_and_boolean_senior(
    client: TestClient, artifact: ModelArtifact
) -> None:
    features = {**EXAMPLE_FEATURES, "total_charges": None, "senior_citizen": True}
    response = client.post("/predict", json={"features": features})
    expected_row = artifact.encoder.encode_row({**features, "senior_citizen": 1})
    assert response.status_code == 200
    assert response.json()["churn_probability"] == pytest.approx(
        float(artifact.estimator.predict_proba(expected_row)[0, 1]), abs=1e-5
    )


def test_predict_batch_returns_probabilities_in_input_order(
    client: TestClient, artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    bodies = prediction_bodies(dataset, 50, start=100)[::-1]
    expected = _model_probabilities(artifact, dataset, slice(100, 150))[::-1]
    response = client.post("/predict/batch", json=bodies)
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["customer_id"] for p in predictions] == [b["customer_id"] for b in bodies]
    served = [p["churn_probability"] for p in predictions]
    assert served == pytest.approx(expected, abs=1e-5)
    assert [p["will_churn"] for p in predictions] == [p >= artifact.threshold for p in served]


def test_predict_batch_past_the_row_limit_is_413(client: TestClient, dataset: TelcoDataset) -> None:
    response = client.post("/predict/batch", json=prediction_bodies(dataset, 51))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Content Too Large",
        "status": 413,
        "detail": "A batch holds at most 50 rows; split it into several requests.",
    }


def test_predict_batch_refuses_an_empty_list(client: TestClient) -> None:
    response = client.post("/predict/batch", json=[])
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "body", "reason": "List should have at least 1 item after validation, not 0"}
    ]


def test_predict_batch_names_the_row_of_a_bad_field(
    client: TestClient, dataset: TelcoDataset
) -> None:
    bodies = prediction_bodies(dataset, 3)
    bodies[2]["features"]["tenure"] = -1
    response = client.post("/predict/batch", json=bodies)
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "[2].features.tenure", "reason": "Input should be greater than or equal to 0"}
    ]


def test_large_responses_are_gzipped(client: TestClient, dataset: TelcoDataset) -> None:
    response = client.post(
        "/predict/batch",
        json=prediction_bodies(dataset, 30),
        headers={"Accept-Encoding": "gzip"},
    )
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) < len(response.content)
    assert len(response.json()["predictions"]) == 30


def test_small_responses_are_not_gzipped(client: TestClient) -> None:
    response = client.post(
        "/predict", json={"features": EXAMPLE_FEATURES}, headers={"Accept-Encoding": "gzip"}
    )
    assert "content-encoding" not in response.headers


def test_every_response_carries_its_process_time(client: TestClient) -> None:
    for response in (
        client.post("/predict", json={"features": EXAMPLE_FEATURES}),
        client.post("/predict", content=b"{"),
        client.get("/health/live"),
        client.get("/nowhere"),
    ):
        assert float(response.headers["x-process-time"]) >= 0


@pytest.mark.parametrize("rows", [1, 7])
def test_batch_and_single_agree(client: TestClient, dataset: TelcoDataset, rows: int) -> None:
    bodies = prediction_bodies(dataset, rows, start=4000)
    batch = client.post("/predict/batch", json=bodies).json()["predictions"]
    single = [client.post("/predict", json=body).json() for body in bodies]
    assert np.allclose(
        [p["churn_probability"] for p in batch],
        [p["churn_probability"] for p in single],
        rtol=0,
        atol=1e-12,
    )
