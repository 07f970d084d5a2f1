"""A model trained on other columns than Telco's (tests/fixtures/own_data.py), served by a real
`churn-mlops serve --grpc-port` and called with stock `tritonclient.http` (binary and JSON) and
`tritonclient.grpc`, without a line of code for its columns: the metadata lists its schema's
inputs, answers equal `/predict/batch`'s (nulls and an unseen plan included), and bad tensors
are refused naming the tensor and row.

(Like tests/e2e/test_grpc_serve.py, this module never imports churn_mlops' generated protobuf
modules, which register the same `inference.*` names as tritonclient's.)"""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as triton  # type: ignore[import-untyped]
from tritonclient.utils import InferenceServerException  # type: ignore[import-untyped]

from benchmarks.servers import free_port
from churn_mlops.data import Dataset
from churn_mlops.db import schema as db_schema
from tests.fixtures.own_data import OWN_FEATURES
from tests.fixtures.security import SECURITY_ENV, provision_key
from tests.fixtures.serve import CLI, stop, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

MODEL = "churn"
ROWS = 300
OWN_DATATYPES = {
    "region": "BYTES",
    "plan": "BYTES",
    "seats": "INT64",
    "monthly_spend": "FP64",
    "logins_last30d": "FP64",  # a nullable integer: NaN is missing
    "has_support_contract": "BOOL",
}


@dataclass
class Server:
    http_url: str
    grpc_url: str
    headers: dict[str, str]


@pytest.fixture(scope="module")
def server(own_artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `serve --grpc-port` of the non-Telco model for the module, and an API key."""
    directory = tmp_path_factory.mktemp("v2-own")
    env = {
        **os.environ,
        "CHURN_ENVIRONMENT": "test",
        "CHURN_CACHE_ENABLED": "false",
        "CHURN_DATABASE_URL": f"sqlite:///{directory / 'churn.db'}",
        "CHURN_PREDICTION_LOG_SPILL_PATH": str(directory / "spill" / "predictions.jsonl"),
        **SECURITY_ENV,
    }
    db_schema.upgrade(env["CHURN_DATABASE_URL"])
    key = provision_key(env["CHURN_DATABASE_URL"], "v2-own", ["predict", "read"])
    port, grpc_port = free_port(), free_port()
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port), "--grpc-port", str(grpc_port), "--workers", "1",
         "--model-dir", str(own_artifact_dir)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        yield Server(f"127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", {"x-api-key": key})
    finally:
        stop(process)


@pytest.fixture(scope="module")
def http_client(server: Server) -> Iterator[Any]:
    client = triton.InferenceServerClient(
        server.http_url, connection_timeout=30, network_timeout=60
    )
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc_client(server: Server) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        yield client


@pytest.fixture(scope="module")
def rows(own_dataset: Dataset) -> list[dict[str, Any]]:
    """Training customers, with an unseen plan and a null of each nullable feature."""
    rows = [{name: own_dataset.columns[name][i] for name in OWN_FEATURES} for i in range(ROWS)]
    rows[1]["plan"] = "platinum"
    rows[2]["plan"] = None
    rows[3]["logins_last30d"] = None
    return rows


def arrays(rows: list[dict[str, Any]]) -> dict[str, np.ndarray[Any, Any]]:
    """Each feature's column as a tritonclient caller builds it from the metadata's datatypes:
    BYTES with an empty element for a missing category, FP64 with NaN for a missing count."""
    columns: dict[str, np.ndarray[Any, Any]] = {}
    for name in OWN_FEATURES:
        values = [row[name] for row in rows]
        datatype = OWN_DATATYPES[name]
        if datatype == "BYTES":
            columns[name] = np.array([(v or "").encode() for v in values], dtype=np.object_)
        elif datatype == "FP64":
            columns[name] = np.array([math.nan if v is None else v for v in values], np.float64)
        elif datatype == "INT64":
            columns[name] = np.array(values, dtype=np.int64)
        else:
            columns[name] = np.array(values, dtype=np.bool_)
    return columns


def http_inputs(columns: dict[str, np.ndarray[Any, Any]], binary: bool) -> list[Any]:
    inputs = []
    for name, array in columns.items():
        tensor = triton.InferInput(name, [len(array)], OWN_DATATYPES[name])
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def grpc_inputs(columns: dict[str, np.ndarray[Any, Any]]) -> list[grpcclient.InferInput]:
    inputs = []
    for name, array in columns.items():
        tensor = grpcclient.InferInput(name, [len(array)], OWN_DATATYPES.get(name, "BYTES"))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def predict_batch(server: Server, rows: list[dict[str, Any]]) -> np.ndarray[Any, Any]:
    response = httpx.post(
        f"http://{server.http_url}/predict/batch",
        content=orjson.dumps([{"features": row} for row in rows]),
        headers={**server.headers, "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return np.array([p["churn_probability"] for p in response.json()["predictions"]])


def test_metadata_lists_the_schema_inputs(
    server: Server, http_client: Any, grpc_client: grpcclient.InferenceServerClient
) -> None:
    expected = [{"name": n, "datatype": OWN_DATATYPES[n], "shape": [-1]} for n in OWN_FEATURES]
    assert http_client.get_model_metadata(MODEL)["inputs"] == expected
    metadata = grpc_client.get_model_metadata(MODEL, headers=server.headers, as_json=True)
    assert [(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"]] == [
        (i["name"], i["datatype"], ["-1"]) for i in expected
    ]  # protobuf's JSON writes int64 as strings


@pytest.mark.parametrize("binary", [True, False])
def test_http_infer_equals_predict_batch(
    server: Server, http_client: Any, rows: list[dict[str, Any]], binary: bool
) -> None:
    expected = predict_batch(server, rows)
    result = http_client.infer(
        MODEL, http_inputs(arrays(rows), binary), headers=dict(server.headers)
    )
    assert np.max(np.abs(result.as_numpy("churn_probability") - expected)) == 0
    single = http_client.infer(
        MODEL, http_inputs(arrays(rows[1:2]), False), headers=dict(server.headers)
    )
    assert single.as_numpy("churn_probability").tolist() == expected[1:2].tolist()


def test_grpc_infer_equals_predict_batch(
    server: Server, grpc_client: grpcclient.InferenceServerClient, rows: list[dict[str, Any]]
) -> None:
    expected = predict_batch(server, rows)
    result = grpc_client.infer(MODEL, grpc_inputs(arrays(rows)), headers=server.headers)
    assert np.max(np.abs(result.as_numpy("churn_probability") - expected)) == 0
    assert len(result.as_numpy("will_churn")) == ROWS


def bad_requests(rows: list[dict[str, Any]]) -> list[tuple[dict[str, np.ndarray[Any, Any]], str]]:
    """(columns, the start of the refusal) of each kind of bad request."""
    columns = arrays(rows[:3])
    region = dict(columns, region=np.array([b"region-00", b"region-99", b"region-01"], object))
    seats = dict(columns, seats=np.array([1, 2, 0], dtype=np.int64))
    as_text = dict(columns, has_support_contract=np.array([b"true"] * 3, dtype=np.object_))
    missing = {name: array for name, array in columns.items() if name != "plan"}
    return [
        (region, "input 'region' row 1: 'region-99' is not one of 'region-00'"),
        (seats, "input 'seats' row 2: 0 is not an integer from 1 to 100000"),
        (as_text, "input 'has_support_contract': datatype 'BYTES' is not BOOL"),
        (missing, "missing input 'plan'"),
    ]


def test_http_bad_tensors_are_400_naming_them(
    server: Server, http_client: Any, rows: list[dict[str, Any]]
) -> None:
    for columns, message in bad_requests(rows):
        for binary in (True, False):
            inputs = []
            for name, array in columns.items():
                datatype = "BYTES" if array.dtype == np.object_ else OWN_DATATYPES[name]
                tensor = triton.InferInput(name, [len(array)], datatype)
                tensor.set_data_from_numpy(array, binary_data=binary)
                inputs.append(tensor)
            with pytest.raises(InferenceServerException) as refused:
                http_client.infer(MODEL, inputs, headers=dict(server.headers))
            assert refused.value.status() == "400"
            assert str(refused.value.message()).startswith(message)


def test_grpc_bad_tensors_are_invalid_argument_naming_them(
    server: Server, grpc_client: grpcclient.InferenceServerClient, rows: list[dict[str, Any]]
) -> None:
    for columns, message in bad_requests(rows):
        inputs = []
        for name, array in columns.items():
            datatype = "BYTES" if array.dtype == np.object_ else OWN_DATATYPES[name]
            tensor = grpcclient.InferInput(name, [len(array)], datatype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        with pytest.raises(InferenceServerException) as refused:
            grpc_client.infer(MODEL, inputs, headers=server.headers)
        assert str(refused.value.status()) == "StatusCode.INVALID_ARGUMENT"
        assert str(refused.value.message()).startswith(message)


def test_http_reasons_equal_predict_batch_reasons(
    server: Server, http_client: Any, rows: list[dict[str, Any]]
) -> None:
    """The reasons name the schema's features and give their values as read (the unseen plan,
    read as missing, is left out: /predict echoes it as sent)."""
    sample = [rows[0], *rows[2:12]]
    result = http_client.infer(
        MODEL,
        http_inputs(arrays(sample), True),
        headers=dict(server.headers),
        parameters={"explain": True},
    )
    reasons = [orjson.loads(item) for item in result.as_numpy("reasons").tolist()]
    response = httpx.post(
        f"http://{server.http_url}/predict/batch",
        content=orjson.dumps([{"features": row, "explain": True} for row in sample]),
        headers={**server.headers, "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert reasons == [p["reasons"] for p in response.json()["predictions"]]
    features = {c["feature"] for r in reasons for c in r["features"]}
    assert features <= set(OWN_FEATURES)
    support = [
        c["value"] for r in reasons for c in r["features"]
        if c["feature"] == "has_support_contract"
    ]  # fmt: skip
    assert support
    assert {type(value) for value in support} == {bool}
