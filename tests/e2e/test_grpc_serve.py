"""The Open Inference Protocol over gRPC, called by stock `tritonclient.grpc` against a real
`churn-mlops serve --grpc-port`: answers equal `/predict/batch`'s, health and metadata through
the client's own methods, every refusal's status code, and a stop that drains its calls.

(This module never imports churn_mlops' generated protobuf modules: they and tritonclient's
register the same `inference.*` names in one process's descriptor pool.)"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from benchmarks.servers import free_port
from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import CATEGORICAL_FEATURES, FEATURE_NAMES, INTEGER_FEATURES
from churn_mlops.db.engine import Database
from churn_mlops.security.principal import RateLimit
from churn_mlops.security.store import CredentialStore
from tests.fixtures.requests import prediction_bodies
from tests.fixtures.security import SECURITY_ENV, TEST_PEPPER
from tests.fixtures.serve import CLI, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

MODEL = "churn"
# One-row calls wait in the batcher for this long: a stop finds a call in flight, and calls
# sent together queue there (the queue holds BATCH_QUEUE; the rest are shed).
BATCH_WAIT_MS = 400
BATCH_QUEUE = 4
SERVER_ENV = {
    "CHURN_ENVIRONMENT": "test",
    # Both protocols compute every answer: no cache to hand one the other's.
    "CHURN_CACHE_ENABLED": "false",
    "CHURN_BATCH_MAX_WAIT_MS": str(BATCH_WAIT_MS),
    "CHURN_BATCH_MAX_QUEUE": str(BATCH_QUEUE),
    "CHURN_BATCH_MAX_QUEUE_DELAY_MS": "60000",
    **SECURITY_ENV,
}


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    grpc_url: str
    keys: dict[str, str]
    """API keys by name: `predict`, `read` (no predict scope) and `limited` (predict, one
    call per 100 s)."""
    status_while_starting: str
    """What a gRPC call got right after the process started, before the model loaded."""


async def _create_keys(url: str) -> dict[str, str]:
    database = Database.from_url(url)
    store = CredentialStore(database.sessions, TEST_PEPPER.encode())
    try:
        made = {
            "predict": await store.create_key("grpc-predict", ["predict"]),
            "read": await store.create_key("grpc-read", ["read"]),
            "limited": await store.create_key("grpc-limited", ["predict"], RateLimit(0.01, 1)),
        }
    finally:
        await database.dispose()
    return {name: created.key for name, created in made.items()}


@pytest.fixture(scope="module")
def server(artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `serve --grpc-port` with two workers for the module (the last test stops it), and
    API keys made in its database once `serve` has migrated it."""
    directory = tmp_path_factory.mktemp("grpc-db")
    database_url = f"sqlite:///{directory / 'churn.db'}"
    env = {
        **SERVER_ENV,
        "CHURN_DATABASE_URL": database_url,
        "CHURN_PREDICTION_LOG_SPILL_PATH": str(directory / "spill" / "predictions.jsonl"),
    }
    port, grpc_port = free_port(), free_port()
    command = [CLI, "serve", "--port", str(port), "--grpc-port", str(grpc_port)]
    process = subprocess.Popen(
        [*command, "--workers", "2", "--model-dir", str(artifact_dir)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}") as early:
            try:
                starting = f"answered {early.is_server_ready()}"
            except InferenceServerException as error:
                starting = str(error.status())
        base_url = f"http://127.0.0.1:{port}"
        wait_ready(base_url, process)
        keys = asyncio.run(_create_keys(database_url))
        yield Server(process, base_url, f"127.0.0.1:{grpc_port}", keys, starting)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(server.grpc_url) as stock_client:
        yield stock_client


@pytest.fixture(scope="module")
def auth(server: Server) -> dict[str, str]:
    return {"x-api-key": server.keys["predict"]}


def customers(dataset: TelcoDataset, count: int, start: int = 0) -> list[dict[str, Any]]:
    """`count` `/predict` bodies of the shipped customers (cycled past the last one)."""
    bodies = prediction_bodies(dataset, len(dataset))
    return [
        {**bodies[(start + i) % len(bodies)], "customer_id": f"c{start + i}"} for i in range(count)
    ]


def tensors(bodies: list[dict[str, Any]]) -> list[grpcclient.InferInput]:
    """One input per feature (BYTES, INT64 or FP64, NaN for a missing total), and the ids."""
    inputs = []
    columns: dict[str, np.ndarray[Any, Any]] = {}
    for name in FEATURE_NAMES:
        values = [body["features"][name] for body in bodies]
        if name in CATEGORICAL_FEATURES:
            columns[name] = np.array([str(v).encode() for v in values], dtype=np.object_)
        elif name in INTEGER_FEATURES:
            columns[name] = np.array(values, dtype=np.int64)
        else:
            columns[name] = np.array([np.nan if v is None else v for v in values], np.float64)
    columns["customer_id"] = np.array([b["customer_id"].encode() for b in bodies], np.object_)
    for name, column in columns.items():
        datatype = {"O": "BYTES", "i": "INT64", "f": "FP64"}[column.dtype.kind]
        tensor = grpcclient.InferInput(name, [len(column)], datatype)
        tensor.set_data_from_numpy(column)
        inputs.append(tensor)
    return inputs


def rest_answers(server: Server, auth: dict[str, str], bodies: list[dict[str, Any]]) -> Any:
    """`/predict/batch`'s probabilities and decisions for the same customers."""
    response = httpx.post(f"{server.base_url}/predict/batch", json=bodies, headers=auth, timeout=60)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    return (
        np.array([p["churn_probability"] for p in predictions]),
        np.array([p["will_churn"] for p in predictions]),
    )


def refusal(call: Any) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as raised:
        call()
    return str(raised.value.status()), str(raised.value.message())


@pytest.mark.parametrize("rows", [1, 32, 10_000])
def test_infer_answers_as_predict_batch(
    server: Server,
    client: grpcclient.InferenceServerClient,
    auth: dict[str, str],
    dataset: TelcoDataset,
    rows: int,
) -> None:
    bodies = customers(dataset, rows, start=rows)
    result = client.infer(MODEL, tensors(bodies), headers=auth, request_id=f"n{rows}")
    probabilities = result.as_numpy("churn_probability")
    will_churn = result.as_numpy("will_churn")
    assert probabilities.dtype == np.float64
    assert will_churn.dtype == np.bool_
    assert probabilities.shape == will_churn.shape == (rows,)
    expected, expected_will_churn = rest_answers(server, auth, bodies)
    assert np.max(np.abs(probabilities - expected)) == 0
    assert np.array_equal(will_churn, expected_will_churn)
    response = result.get_response()
    assert response.id == f"n{rows}"
    assert response.model_name == MODEL


def test_infer_returns_only_the_outputs_asked_for(
    client: grpcclient.InferenceServerClient, auth: dict[str, str], dataset: TelcoDataset
) -> None:
    asked = [grpcclient.InferRequestedOutput("will_churn")]
    result = client.infer(MODEL, tensors(customers(dataset, 3)), outputs=asked, headers=auth)
    assert [output.name for output in result.get_response().outputs] == ["will_churn"]
    assert result.as_numpy("churn_probability") is None


def test_health_metadata_and_readiness_through_the_client(
    client: grpcclient.InferenceServerClient, auth: dict[str, str]
) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert not client.is_model_ready("no-such-model")
    assert not client.is_model_ready(MODEL, model_version="no-such-version")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "churn-mlops"
    metadata = client.get_model_metadata(MODEL, headers=auth, as_json=True)
    assert metadata["name"] == MODEL
    assert [tensor["name"] for tensor in metadata["inputs"]] == list(FEATURE_NAMES)
    assert {t["name"]: t["datatype"] for t in metadata["outputs"]} == {
        "churn_probability": "FP64",
        "will_churn": "BOOL",
    }
    version = metadata["versions"][0]
    assert client.is_model_ready(MODEL, model_version=version)


def test_bad_requests_get_their_status_codes(
    client: grpcclient.InferenceServerClient,
    auth: dict[str, str],
    server: Server,
    dataset: TelcoDataset,
) -> None:
    bodies = customers(dataset, 2)
    status, message = refusal(lambda: client.infer("nope", tensors(bodies), headers=auth))
    assert status == "StatusCode.NOT_FOUND"
    assert "nope" in message
    status, _ = refusal(
        lambda: client.infer(MODEL, tensors(bodies), model_version="9", headers=auth)
    )
    assert status == "StatusCode.NOT_FOUND"
    bad = [dict(body, features=dict(body["features"])) for body in bodies]
    bad[1]["features"]["contract"] = "Weekly"
    status, message = refusal(lambda: client.infer(MODEL, tensors(bad), headers=auth))
    assert status == "StatusCode.INVALID_ARGUMENT"
    assert "'contract' row 1" in message
    missing = [t for t in tensors(bodies) if t.name() != "tenure"]
    status, message = refusal(lambda: client.infer(MODEL, missing, headers=auth))
    assert (status, "tenure" in message) == ("StatusCode.INVALID_ARGUMENT", True)
    status, _ = refusal(
        lambda: client.infer(MODEL, tensors(customers(dataset, 10_001)), headers=auth)
    )
    assert status == "StatusCode.RESOURCE_EXHAUSTED"
    status, _ = refusal(lambda: client.infer(MODEL, tensors(bodies)))
    assert status == "StatusCode.UNAUTHENTICATED"
    status, _ = refusal(lambda: client.infer(MODEL, tensors(bodies), headers={"x-api-key": "x"}))
    assert status == "StatusCode.UNAUTHENTICATED"
    read_only = {"authorization": "Bearer nonsense"}
    status, _ = refusal(lambda: client.infer(MODEL, tensors(bodies), headers=read_only))
    assert status == "StatusCode.UNAUTHENTICATED"
    read_only = {"x-api-key": server.keys["read"]}
    status, message = refusal(lambda: client.infer(MODEL, tensors(bodies), headers=read_only))
    assert (status, "predict" in message) == ("StatusCode.PERMISSION_DENIED", True)
    limited = {"x-api-key": server.keys["limited"]}
    client.get_model_metadata(MODEL, headers=limited)
    status, _ = refusal(lambda: client.get_model_metadata(MODEL, headers=limited))
    assert status == "StatusCode.RESOURCE_EXHAUSTED"


def test_calls_past_the_batchers_queue_are_shed(
    client: grpcclient.InferenceServerClient, auth: dict[str, str], dataset: TelcoDataset
) -> None:
    """Sent together on one channel (one worker), one-row calls wait BATCH_WAIT_MS in the
    batcher: BATCH_QUEUE of them are answered, the others refused at once."""
    calls = 3 * BATCH_QUEUE
    outcomes: list[Any] = []
    done = threading.Event()

    def finished(result: Any, error: Any) -> None:
        outcomes.append(error.status() if error is not None else "OK")
        if len(outcomes) == calls:
            done.set()

    for i in range(calls):
        one = tensors(customers(dataset, 1, start=100 + i))
        client.async_infer(MODEL, one, finished, headers=auth)
    assert done.wait(timeout=30)
    assert outcomes.count("OK") == BATCH_QUEUE
    assert outcomes.count("StatusCode.RESOURCE_EXHAUSTED") == calls - BATCH_QUEUE


def test_calls_are_counted_in_the_request_metrics(server: Server) -> None:
    text = ""
    deadline = time.monotonic() + 10
    while 'route="/inference.GRPCInferenceService/ModelInfer"' not in text:
        assert time.monotonic() < deadline, "no gRPC request in /metrics"
        time.sleep(0.5)
        text = httpx.get(f"{server.base_url}/metrics", timeout=5).text
    assert 'method="GRPC"' in text


def test_typed_contents_answer_as_raw_contents(
    server: Server,
    client: grpcclient.InferenceServerClient,
    auth: dict[str, str],
    dataset: TelcoDataset,
) -> None:
    """A request with typed `contents` instead of `raw_input_contents` (as KServe's own
    clients may send) gets the same answer as tritonclient's raw one."""
    bodies = customers(dataset, 5, start=900)
    raw = client.infer(MODEL, tensors(bodies), headers=auth).as_numpy("churn_probability")
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    for tensor in tensors(bodies):
        typed = tensor._get_tensor()
        values = np.frombuffer(tensor._get_content(), dtype=np.uint8)
        if typed.datatype == "BYTES":
            column = [body["features"].get(typed.name, body["customer_id"]) for body in bodies]
            typed.contents.bytes_contents.extend(str(v).encode() for v in column)
        elif typed.datatype == "INT64":
            typed.contents.int64_contents.extend(values.view("<i8").tolist())
        else:
            typed.contents.fp64_contents.extend(values.view("<f8").tolist())
        request.inputs.append(typed)
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request, metadata=tuple(auth.items()), timeout=30)
    typed_answer = np.frombuffer(response.raw_output_contents[0], dtype="<f8")
    assert response.outputs[0].name == "churn_probability"
    assert np.max(np.abs(typed_answer - raw)) == 0


def test_grpc_health_check_for_kubernetes_probes(server: Server) -> None:
    """grpc.health.v1.Health/Check, as the kubelet's grpc probe calls it."""
    with grpc.insecure_channel(server.grpc_url) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        serving = b"\x08\x01"  # HealthCheckResponse{status: SERVING}
        assert check(b"", timeout=10) == serving
        for service in (b"inference.GRPCInferenceService", b"liveness"):
            assert check(b"\x0a" + bytes([len(service)]) + service, timeout=10) == serving
        with pytest.raises(grpc.RpcError) as unknown:
            check(b"\x0a\x04nope", timeout=10)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_unavailable_while_starting(server: Server) -> None:
    assert server.status_while_starting == "StatusCode.UNAVAILABLE"


def test_stop_drains_a_call_in_flight(
    server: Server,
    client: grpcclient.InferenceServerClient,
    auth: dict[str, str],
    dataset: TelcoDataset,
) -> None:
    """SIGTERM while a call waits in the batcher: the call is answered, then the server exits.
    (Last in the module: it stops the module's server.)"""
    with ThreadPoolExecutor(1) as pool:
        one = tensors(customers(dataset, 1, start=500))
        in_flight = pool.submit(client.infer, MODEL, one, headers=auth)
        time.sleep(BATCH_WAIT_MS / 2000)  # the call waits in the batcher
        server.process.send_signal(signal.SIGTERM)
        result = in_flight.result(timeout=30)
    assert result.as_numpy("churn_probability").shape == (1,)
    # uvicorn re-raises the signal it stopped on once it has shut down.
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
