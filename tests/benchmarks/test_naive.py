from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from benchmarks.naive import create_app
from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings
from tests.fixtures.requests import prediction_bodies


@pytest.fixture
def naive_client(artifact_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=artifact_dir))) as client:
        yield client


def _probabilities(artifact: ModelArtifact, dataset: TelcoDataset, count: int) -> list[float]:
    rows = artifact.encoder.encode_columns(dataset.subset(range(count)).columns)
    return [float(p) for p in artifact.estimator.predict_proba(rows)[:, 1]]


def test_naive_predict_answers_the_models_probability_in_the_services_shape(
    naive_client: TestClient, artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    bodies = prediction_bodies(dataset, 5)
    for body, probability in zip(bodies, _probabilities(artifact, dataset, 5), strict=True):
        response = naive_client.post("/predict", json=body)
        assert response.status_code == 200
        assert response.json() == {
            "customer_id": body["customer_id"],
            "churn_probability": probability,
            "will_churn": probability >= artifact.threshold,
            "model_version": artifact.version,
            "cached": False,
        }


def test_naive_predict_reads_a_missing_total_charge_as_nan(
    naive_client: TestClient, artifact: ModelArtifact
) -> None:
    features = {**EXAMPLE_FEATURES, "total_charges": None}
    response = naive_client.post("/predict", json={"features": features})
    expected = artifact.estimator.predict_proba(artifact.encoder.encode_row(features))[0, 1]
    assert response.status_code == 200
    assert response.json()["churn_probability"] == float(expected)


def test_naive_batch_answers_every_row_in_order(
    naive_client: TestClient, artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    response = naive_client.post("/predict/batch", json=prediction_bodies(dataset, 50))
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["churn_probability"] for p in predictions] == _probabilities(artifact, dataset, 50)
    assert [p["customer_id"] for p in predictions] == dataset.customer_ids[:50]


def test_naive_health_answers_once_the_model_is_loaded(naive_client: TestClient) -> None:
    response = naive_client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
