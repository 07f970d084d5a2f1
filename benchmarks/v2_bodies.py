"""Open Inference Protocol (V2) request bodies for the `v2` suite, built once before a run.

Every body carries real customers of the Telco dataset, one tensor per feature named as the
feature: BYTES for text, INT64 for whole numbers, FP64 for charges (NaN for "not billed yet"),
shape [N], and `customer_id` as a BYTES input, as a stock client sends them. JSON bodies fit on
one line (wrk's bodies file); binary ones (Triton's binary tensor extension) are built by
tritonclient itself and sent with their `Inference-Header-Content-Length`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]
import tritonclient.http as httpclient  # type: ignore[import-untyped]

from churn_mlops.data import TelcoDataset

MODEL = "churn"
INFER_PATH = f"/v2/models/{MODEL}/infer"
GRPC_INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
HEADER_LENGTH = "Inference-Header-Content-Length"
CUSTOMER_ID = "customer_id"
OUTPUTS = ("churn_probability", "will_churn")

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    """One input tensor: its name, V2 datatype and values, one per row."""

    name: str
    datatype: str
    values: npt.NDArray[Any]


def datatype_of(values: Sequence[Any]) -> str:
    """BYTES for text, INT64 when every value is a whole number, else FP64 (None: NaN)."""
    present = [value for value in values if value is not None]
    if present and all(isinstance(value, str) for value in present):
        return "BYTES"
    whole = all(isinstance(value, int) and not isinstance(value, bool) for value in present)
    if present and whole and len(present) == len(values):
        return "INT64"
    return "FP64"


def columns(customer_ids: Sequence[str], rows: Sequence[Row]) -> list[Column]:
    """The input tensors of `rows`, in the features' order, then `customer_id`."""
    if not rows:
        raise ValueError("a request holds at least one row")
    tensors = []
    for name in rows[0]:
        values = [row[name] for row in rows]
        datatype = datatype_of(values)
        if datatype == "BYTES":
            array: npt.NDArray[Any] = np.array([v.encode() for v in values], dtype=np.object_)
        elif datatype == "INT64":
            array = np.array(values, dtype=np.int64)
        else:
            array = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
        tensors.append(Column(name, datatype, array))
    ids = np.array([customer_id.encode() for customer_id in customer_ids], dtype=np.object_)
    tensors.append(Column(CUSTOMER_ID, "BYTES", ids))
    return tensors


def _json_data(column: Column) -> list[Any]:
    if column.datatype == "BYTES":
        return [value.decode() for value in column.values]
    return list(column.values.tolist())


def json_body(customer_ids: Sequence[str], rows: Sequence[Row]) -> bytes:
    """A V2 JSON infer request of `rows`, on one line, with both outputs as JSON; a missing
    `total_charges` is the bare `NaN` that tritonclient's JSON (Python's `json`) writes."""
    document = {
        "inputs": [
            {
                "name": column.name,
                "datatype": column.datatype,
                "shape": [len(rows)],
                "data": _json_data(column),
            }
            for column in columns(customer_ids, rows)
        ],
    }
    return json.dumps(document, separators=(",", ":")).encode()


def binary_body(customer_ids: Sequence[str], rows: Sequence[Row]) -> tuple[bytes, int]:
    """(body, JSON header length) of a V2 request with binary inputs and binary outputs, as
    `tritonclient.http`'s `infer` builds it."""
    inputs = []
    for column in columns(customer_ids, rows):
        tensor = httpclient.InferInput(column.name, [len(rows)], column.datatype)
        tensor.set_data_from_numpy(column.values, binary_data=True)
        inputs.append(tensor)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in OUTPUTS]
    body, header_length = httpclient.InferenceServerClient.generate_request_body(
        inputs, outputs=outputs
    )
    return bytes(body), int(header_length or 0)


def grpc_request(customer_ids: Sequence[str], rows: Sequence[Row]) -> bytes:
    """A serialized `ModelInferRequest` with `raw_input_contents`, as tritonclient.grpc
    sends it."""
    request = grpcclient.service_pb2.ModelInferRequest(model_name=MODEL)
    for column in columns(customer_ids, rows):
        tensor = grpcclient.InferInput(column.name, [len(rows)], column.datatype)
        tensor.set_data_from_numpy(column.values)
        request.inputs.extend([tensor._get_tensor()])  # the client's own message
        raw = tensor._get_content()
        if raw is not None:
            request.raw_input_contents.extend([raw])
    for name in OUTPUTS:
        request.outputs.extend([grpcclient.InferRequestedOutput(name)._get_tensor()])
    serialized: bytes = request.SerializeToString()
    return serialized


def single_rows(dataset: TelcoDataset, count: int) -> list[tuple[list[str], list[Row]]]:
    """`count` one-row requests of different customers (cycling past the dataset's size)."""
    ids, rows = dataset.customer_ids, list(dataset.feature_rows())
    return [([ids[i % len(ids)]], [rows[i % len(rows)]]) for i in range(count)]


def batches(dataset: TelcoDataset, size: int, count: int) -> list[tuple[list[str], list[Row]]]:
    """`count` different requests of `size` customers, each starting at another customer."""
    ids, rows = dataset.customer_ids, list(dataset.feature_rows())
    step = max(len(rows) // count, 1)
    return [
        (
            [ids[(b * step + i) % len(ids)] for i in range(size)],
            [rows[(b * step + i) % len(rows)] for i in range(size)],
        )
        for b in range(count)
    ]
