"""The Open Inference Protocol over REST against a real `churn-mlops serve`, called with the
stock `tritonclient.http` client: binary (its default), JSON, gzip, output subsets, N = 1, 32
and 10,000, answers equal to `/predict/batch`'s, and its health and metadata methods."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton  # type: ignore[import-untyped]
from tritonclient.utils import InferenceServerException  # type: ignore[import-untyped]

from benchmarks.servers import free_port
from churn_mlops.data import TelcoDataset
from churn_mlops.db import schema as db_schema
from tests.api.v2.conftest import DATATYPES, feature_arrays
from tests.fixtures.security import SECURITY_ENV, provision_key
from tests.fixtures.serve import CLI, stop, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

MAX_BATCH_ROWS = 10_000


@pytest.fixture(scope="module")
def served(
    artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    """A one-worker server and the headers with an API key in its database."""
    directory = tmp_path_factory.mktemp("v2-e2e")
    env = {
        **os.environ,
        "CHURN_ENVIRONMENT": "test",
        "CHURN_DATABASE_URL": f"sqlite:///{directory / 'churn.db'}",
        "CHURN_PREDICTION_LOG_SPILL_PATH": str(directory / "spill" / "predictions.jsonl"),
        "CHURN_MAX_BATCH_ROWS": str(MAX_BATCH_ROWS),
        **SECURITY_ENV,
    }
    db_schema.upgrade(env["CHURN_DATABASE_URL"])
    headers = {"X-API-Key": provision_key(env["CHURN_DATABASE_URL"], "v2", ["predict", "read"])}
    port = free_port()
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port), "--workers", "1", "--model-dir", str(artifact_dir)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        yield f"127.0.0.1:{port}", headers
    finally:
        stop(process)


@pytest.fixture(scope="module")
def client(served: tuple[str, dict[str, str]]) -> Iterator[Any]:
    url, _ = served
    client = triton.InferenceServerClient(url, connection_timeout=30, network_timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def rows(dataset: TelcoDataset) -> list[dict[str, Any]]:
    every = list(dataset.feature_rows())
    return (every * (MAX_BATCH_ROWS // len(every) + 1))[:MAX_BATCH_ROWS]


def inputs_for(rows: list[dict[str, Any]], binary: bool) -> list[Any]:
    inputs = []
    for name, array in feature_arrays(rows).items():
        tensor = triton.InferInput(name, [len(rows)], DATATYPES[array.dtype.kind])
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def predict_batch(served: tuple[str, dict[str, str]], rows: list[dict[str, Any]]) -> list[Any]:
    url, headers = served
    response = httpx.post(
        f"http://{url}/predict/batch",
        content=orjson.dumps([{"features": row} for row in rows]),
        headers={**headers, "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return [p["churn_probability"] for p in response.json()["predictions"]]


@pytest.mark.parametrize("count", [1, 32, MAX_BATCH_ROWS])
# tritonclient adds its own headers to the dict it is given: each call gets a copy.
def test_binary_infer_equals_predict_batch(
    client: Any, served: tuple[str, dict[str, str]], rows: list[dict[str, Any]], count: int
) -> None:
    sample = rows[:count]
    result = client.infer("churn", inputs_for(sample, binary=True), headers=dict(served[1]))
    probabilities = result.as_numpy("churn_probability")
    expected = predict_batch(served, sample)
    assert np.max(np.abs(probabilities - np.array(expected))) == 0
    assert result.as_numpy("will_churn").dtype == np.bool_
    assert len(result.as_numpy("will_churn")) == count


def test_json_gzip_and_output_subset(
    client: Any, served: tuple[str, dict[str, str]], rows: list[dict[str, Any]]
) -> None:
    sample = rows[:32]
    expected = predict_batch(served, sample)
    json_only = client.infer(
        "churn",
        inputs_for(sample, binary=False),
        outputs=[triton.InferRequestedOutput("churn_probability", binary_data=False)],
        headers=dict(served[1]),
    )
    assert json_only.as_numpy("churn_probability").tolist() == expected
    assert json_only.as_numpy("will_churn") is None
    for algorithm in ("gzip", "deflate"):
        packed = client.infer(
            "churn",
            inputs_for(sample, binary=True),
            headers=dict(served[1]),
            request_compression_algorithm=algorithm,
            response_compression_algorithm=algorithm,
        )
        assert packed.as_numpy("churn_probability").tolist() == expected


def test_health_metadata_and_errors(client: Any, served: tuple[str, dict[str, str]]) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("churn")
    assert not client.is_model_ready("other")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata("churn")
    assert len(metadata["inputs"]) == 19
    assert client.is_model_ready("churn", metadata["versions"][0])
    with pytest.raises(InferenceServerException) as refused:
        client.infer("churn", inputs_for([], binary=True)[:1], headers=dict(served[1]))
    assert refused.value.status() == "400"
    with pytest.raises(InferenceServerException) as unauthenticated:
        client.infer("churn", inputs_for([], binary=True)[:1])
    assert unauthenticated.value.status() == "401"
