"""The V2 REST routes in process, with request bodies built by tritonclient's own encoder
(`InferenceServerClient.generate_request_body`) and answers read by its `InferResult`."""

from __future__ import annotations

import gzip
import struct
import zlib
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from tritonclient.http import (  # type: ignore[import-untyped]
    InferenceServerClient,
    InferInput,
    InferRequestedOutput,
    InferResult,
)

from churn_mlops.data.telco_example import FEATURE_NAMES
from tests.api.v2.conftest import DATATYPES, MAX_BATCH_ROWS, feature_arrays

INFER = "/v2/models/churn/infer"


def triton_inputs(
    rows: list[dict[str, Any]], binary: bool = True, ids: list[str] | None = None
) -> list[InferInput]:
    inputs = []
    arrays = feature_arrays(rows)
    if ids is not None:
        arrays["customer_id"] = np.array([i.encode() for i in ids], dtype=np.object_)
    for name, array in arrays.items():
        tensor = InferInput(name, [len(rows)], DATATYPES[array.dtype.kind])
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def post_infer(
    client: TestClient,
    inputs: list[InferInput],
    outputs: list[InferRequestedOutput] | None = None,
    path: str = INFER,
    headers: dict[str, str] | None = None,
    request_id: str = "",
) -> tuple[Any, InferResult | None]:
    body, json_size = InferenceServerClient.generate_request_body(
        inputs, outputs=outputs, request_id=request_id
    )
    sent = dict(headers or {})
    if json_size is not None:
        sent["Inference-Header-Content-Length"] = str(json_size)
    response = client.post(path, content=body, headers=sent)
    if response.status_code != 200:
        return response, None
    # httpx asks for gzip and inflates the answer: `content` is as before compression.
    result = InferResult.from_response_body(
        response.content, header_length=response.headers.get("inference-header-content-length")
    )
    return response, result


def predict_batch(client: TestClient, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = client.post(
        "/predict/batch",
        content=orjson.dumps([{"features": r} for r in rows]),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    predictions: list[dict[str, Any]] = response.json()["predictions"]
    return predictions


@pytest.mark.parametrize("binary", [True, False])
def test_infer_equals_predict_batch(
    client: TestClient, rows: list[dict[str, Any]], binary: bool
) -> None:
    sample = rows[:MAX_BATCH_ROWS]
    response, result = post_infer(client, triton_inputs(sample, binary=binary), request_id="r-1")
    assert result is not None, response.text
    expected = predict_batch(client, sample)
    probabilities = result.as_numpy("churn_probability")
    assert probabilities.dtype == np.float64
    assert probabilities.tolist() == [p["churn_probability"] for p in expected]
    assert result.as_numpy("will_churn").tolist() == [p["will_churn"] for p in expected]
    answer = result.get_response()
    assert answer["id"] == "r-1"
    assert answer["model_name"] == "churn"
    assert answer["model_version"] == expected[0]["model_version"]


def test_infer_json_outputs_and_subset(client: TestClient, rows: list[dict[str, Any]]) -> None:
    sample = rows[:5]
    outputs = [InferRequestedOutput("will_churn", binary_data=False)]
    response, result = post_infer(client, triton_inputs(sample, binary=False), outputs)
    assert result is not None, response.text
    assert response.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in response.headers
    assert [o["name"] for o in result.get_response()["outputs"]] == ["will_churn"]
    assert result.as_numpy("churn_probability") is None
    assert result.as_numpy("will_churn").tolist() == [
        p["will_churn"] for p in predict_batch(client, sample)
    ]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_infer_compressed_both_ways(
    client: TestClient, rows: list[dict[str, Any]], encoding: str
) -> None:
    sample = rows[:MAX_BATCH_ROWS]  # an answer above CHURN_GZIP_MIN_BYTES
    body, json_size = InferenceServerClient.generate_request_body(triton_inputs(sample))
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    response = client.post(
        INFER,
        content=packed,
        headers={
            "Inference-Header-Content-Length": str(json_size),
            "Content-Encoding": encoding,
            "Accept-Encoding": encoding,
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-encoding"] == encoding
    # httpx inflates gzip and deflate bodies: `content` is the answer as sent before compression.
    result = InferResult.from_response_body(
        response.content, header_length=response.headers["inference-header-content-length"]
    )
    expected = [p["churn_probability"] for p in predict_batch(client, sample)]
    assert result.as_numpy("churn_probability").tolist() == expected


def test_infer_by_version_and_metadata(client: TestClient, rows: list[dict[str, Any]]) -> None:
    version = client.get("/v2/models/churn").json()["versions"][0]
    response, result = post_infer(
        client,
        triton_inputs(rows[:1], ids=["c-1"]),
        path=f"/v2/models/churn/versions/{version}/infer",
    )
    assert result is not None, response.text
    assert result.get_response()["model_version"] == version
    metadata = client.get(f"/v2/models/churn/versions/{version}").json()
    assert [i["name"] for i in metadata["inputs"]] == list(FEATURE_NAMES)
    assert client.get(f"/v2/models/churn/versions/{version}/ready").json()["ready"] is True
    assert client.get("/v2/models/churn/versions/v-none/ready").status_code == 404
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert "binary_tensor_data" in client.get("/v2").json()["extensions"]


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("/v2/models/other/infer", 404, "unknown model 'other'"),
        ("/v2/models/churn/versions/v0/infer", 404, "unknown version 'v0'"),
    ],
)
def test_unknown_model_or_version(
    client: TestClient, rows: list[dict[str, Any]], path: str, status: int, fragment: str
) -> None:
    response, _ = post_infer(client, triton_inputs(rows[:2]), path=path)
    assert response.status_code == status
    assert fragment in response.json()["error"]


def refused(
    client: TestClient, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    response = client.post(INFER, content=body, headers=headers or {})
    error: str = response.json()["error"]
    return response.status_code, error


def test_bad_requests_are_v2_errors(client: TestClient, rows: list[dict[str, Any]]) -> None:
    body, json_size = InferenceServerClient.generate_request_body(triton_inputs(rows[:3]))
    assert json_size is not None
    status, error = refused(client, body, {"Inference-Header-Content-Length": str(len(body) + 1)})
    assert (status, error) == (
        400,
        f"Inference-Header-Content-Length {len(body) + 1} is past the body's {len(body)} bytes",
    )
    status, error = refused(
        client, body + b"x", {"Inference-Header-Content-Length": str(json_size)}
    )
    assert (status, error) == (400, "the body has 1 bytes after the inputs' binary data")
    assert refused(client, b"{not json")[0] == 400
    status, error = refused(client, orjson.dumps({"inputs": []}))
    assert (status, error) == (400, "the request needs a non-empty list of inputs")


def test_bytes_length_past_block_names_tensor_and_row(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    inputs = triton_inputs(rows[:2])
    gender = inputs[0]
    assert gender.name() == "gender"
    # Same block size, second element's length running past it.
    raw = struct.pack("<I", 4) + b"Male" + struct.pack("<I", 9) + b"Male"
    gender._raw_data = raw  # the size stays what tritonclient declared for the real block
    gender._parameters["binary_data_size"] = len(raw)
    body, json_size = InferenceServerClient.generate_request_body(inputs)
    status, error = refused(client, body, {"Inference-Header-Content-Length": str(json_size)})
    assert (status, error) == (
        400,
        "input 'gender' row 1: element length runs past the binary data",
    )


def test_unknown_category_names_tensor_and_row(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    changed = [dict(r) for r in rows[:4]]
    changed[3]["payment_method"] = "Cash"
    response, _ = post_infer(client, triton_inputs(changed))
    assert response.status_code == 400
    assert response.json()["error"].startswith("input 'payment_method' row 3: 'Cash' is not one of")


def test_too_many_rows_is_413(client: TestClient, rows: list[dict[str, Any]]) -> None:
    response, _ = post_infer(client, triton_inputs(rows[: MAX_BATCH_ROWS + 1]))
    assert response.status_code == 413
    assert f"more than the {MAX_BATCH_ROWS}" in response.json()["error"]


def test_infer_needs_credentials_as_v2_error(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    body, json_size = InferenceServerClient.generate_request_body(triton_inputs(rows[:1]))
    response = client.post(
        INFER,
        content=body,
        headers={"Inference-Header-Content-Length": str(json_size), "X-API-Key": "wrong"},
    )
    assert response.status_code == 401
    assert "error" in response.json()
    assert "www-authenticate" in response.headers
