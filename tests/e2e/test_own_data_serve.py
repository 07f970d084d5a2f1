"""A real `churn-mlops serve` of the model trained on the generated non-Telco data: over HTTP,
on the fast path and on the pydantic path, its answers are the offline model's, bad rows are
refused per field, and its OpenAPI document and `GET /model/schema` describe its columns."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.servers import free_port
from churn_mlops.data import Dataset
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.compiled import PARITY_TOLERANCE
from tests.fixtures.own_data import OWN_FEATURES, REGIONS
from tests.fixtures.requests import prediction_bodies
from tests.fixtures.security import SECURITY_ENV
from tests.fixtures.serve import CLI, stop, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROWS = 30


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, own_artifact_dir: Path
) -> Iterator[tuple[str, dict[str, str]]]:
    """`churn-mlops serve --model-dir` of the non-Telco model (two workers), and the headers
    of an API key made by `churn-mlops keys create`."""
    directory = tmp_path_factory.mktemp("own-serve")
    env = {
        **os.environ,
        "CHURN_ENVIRONMENT": "test",
        "CHURN_DATABASE_URL": f"sqlite:///{directory / 'churn.db'}",
        "CHURN_PREDICTION_LOG_SPILL_PATH": str(directory / "spill" / "predictions.jsonl"),
        **SECURITY_ENV,
    }
    created = subprocess.run(
        [CLI, "keys", "create", "--name", "own", "--scope", "predict,read"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    headers = {"X-API-Key": created.stdout.strip().splitlines()[-1]}
    port = free_port()
    command = [CLI, "serve", "--port", str(port), "--workers", "2"]
    process = subprocess.Popen(
        [*command, "--model-dir", str(own_artifact_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, process)
        yield base_url, headers
    finally:
        stop(process)


@pytest.fixture(scope="module")
def http(server: tuple[str, dict[str, str]]) -> Iterator[httpx.Client]:
    base_url, headers = server
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def bodies(own_dataset: Dataset) -> list[dict[str, Any]]:
    return prediction_bodies(own_dataset, ROWS, start=500)


def _offline(artifact: ModelArtifact, bodies: list[dict[str, Any]]) -> tuple[Any, Any]:
    columns = {name: [body["features"][name] for body in bodies] for name in OWN_FEATURES}
    encoded = artifact.encoder.encode_columns(columns)
    return artifact.forest.predict(encoded), artifact.estimator.predict_proba(encoded)[:, 1]


def test_predict_and_batch_answer_the_offline_models_probabilities(
    http: httpx.Client, own_artifact: ModelArtifact, bodies: list[dict[str, Any]]
) -> None:
    forest, estimator = _offline(own_artifact, bodies)
    singles = []
    for body in bodies:
        response = http.post("/predict", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == own_artifact.version
        singles.append(response.json()["churn_probability"])
    batch = http.post("/predict/batch", json=bodies)
    assert batch.status_code == 200, batch.text
    batched = [p["churn_probability"] for p in batch.json()["predictions"]]
    for served in (singles, batched):
        assert served == pytest.approx(forest.tolist(), abs=1e-12)
        assert served == pytest.approx(estimator.tolist(), abs=PARITY_TOLERANCE)


def test_a_body_msgspec_refuses_is_answered_on_the_pydantic_path(
    http: httpx.Client, own_artifact: ModelArtifact, bodies: list[dict[str, Any]]
) -> None:
    forest, _ = _offline(own_artifact, bodies[:5])
    lax = [
        {**b, "features": {**b["features"], "seats": float(b["features"]["seats"])}}
        for b in bodies[:5]
    ]
    single = http.post("/predict", json=lax[0])
    batch = http.post("/predict/batch", json=lax)
    assert single.status_code == batch.status_code == 200
    assert single.json()["churn_probability"] == pytest.approx(forest[0], abs=1e-12)
    served = [p["churn_probability"] for p in batch.json()["predictions"]]
    assert served == pytest.approx(forest.tolist(), abs=1e-12)


def test_an_unseen_plan_is_answered_as_a_missing_plan(
    http: httpx.Client, own_artifact: ModelArtifact, bodies: list[dict[str, Any]]
) -> None:
    features = {**bodies[0]["features"], "plan": "platinum"}
    expected = float(own_artifact.forest.predict(own_artifact.encoder.encode_row(features))[0])
    missing = own_artifact.encoder.encode_row({**features, "plan": None})
    assert expected == float(own_artifact.forest.predict(missing)[0])
    response = http.post("/predict", json={"features": features})
    assert response.status_code == 200
    assert response.json()["churn_probability"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"seats": "12"}, "seats"),
        ({"seats": 0}, "seats"),
        ({"region": "region-99"}, "region"),
        ({"region": None}, "region"),
        ({"has_support_contract": "true"}, "has_support_contract"),
    ],
)
def test_a_bad_row_is_refused_naming_its_field(
    http: httpx.Client, bodies: list[dict[str, Any]], changes: dict[str, Any], field: str
) -> None:
    bad = {"features": {**bodies[0]["features"], **changes}}
    single = http.post("/predict", json=bad)
    assert single.status_code == 422
    assert single.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in single.json()["errors"]] == [f"features.{field}"]
    batch = http.post("/predict/batch", json=[bodies[1], bad])
    assert batch.status_code == 422
    assert [e["field"] for e in batch.json()["errors"]] == [f"[1].features.{field}"]


def test_openapi_and_model_schema_describe_the_models_columns(
    http: httpx.Client, own_artifact: ModelArtifact
) -> None:
    document = http.get("/openapi.json").json()
    features = document["components"]["schemas"]["CustomerFeatures"]
    assert list(features["properties"]) == list(OWN_FEATURES)
    assert features["properties"]["region"]["enum"] == REGIONS
    assert features["examples"] == [dict(own_artifact.schema.example)]
    schema = http.get("/model/schema")
    assert schema.status_code == 200
    assert schema.json() == {
        **own_artifact.schema.to_dict(),
        "sha256": own_artifact.schema.sha256,
    }


def test_model_schema_needs_credentials(server: tuple[str, dict[str, str]]) -> None:
    response = httpx.get(f"{server[0]}/model/schema", timeout=5)
    assert response.status_code == 401
