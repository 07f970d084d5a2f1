from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from churn_mlops.api.app import create_app
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings
from tests.fixtures.security import api_client


def test_live_answers_ok(client: TestClient) -> None:
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_reports_the_loaded_model(client: TestClient, artifact: ModelArtifact) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "model_version": artifact.version,
        "redis": "disabled",
        "database": "disabled",
    }


def test_ready_is_503_until_the_model_is_loaded(settings: Settings) -> None:
    # No `with`: the lifespan that loads the model has not run.
    client = api_client(create_app(settings))
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json() == {
        "status": "starting",
        "model_version": None,
        "redis": "disabled",
        "database": "disabled",
    }
    prediction = client.post("/predict", json={"features": EXAMPLE_FEATURES})
    assert prediction.status_code == 503
    assert prediction.json()["detail"] == "The model is still loading; retry in a moment."


def test_model_describes_the_served_artifact(client: TestClient, artifact: ModelArtifact) -> None:
    response = client.get("/model")
    assert response.status_code == 200
    assert response.json() == {
        **artifact.info.model_dump(mode="json"),
        "source": "directory",
        "challenger": None,
        "refused": [],
    }


def test_startup_fails_on_a_missing_artifact(tmp_path: pytest.TempPathFactory) -> None:
    app = create_app(Settings(model_dir=tmp_path))  # type: ignore[arg-type]
    with pytest.raises(Exception, match="not a model artifact"), TestClient(app):
        pass


def test_unknown_route_is_a_problem_document(client: TestClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "Not Found",
    }


def test_openapi_documents_prediction_bodies_with_dataset_examples(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    single = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert single["schema"] == {"$ref": "#/components/schemas/PredictRequest"}
    batch = schema["paths"]["/predict/batch"]["post"]["requestBody"]["content"]["application/json"]
    assert batch["schema"]["maxItems"] == 50
    components = schema["components"]["schemas"]
    assert components["CustomerFeatures"]["examples"] == [EXAMPLE_FEATURES]
    assert components["CustomerFeatures"]["additionalProperties"] is False
    assert components["CustomerFeatures"]["properties"]["internet_service"]["enum"] == [
        "DSL",
        "Fiber optic",
        "No",
    ]
    assert schema["paths"]["/predict/batch"]["post"]["responses"]["413"]
