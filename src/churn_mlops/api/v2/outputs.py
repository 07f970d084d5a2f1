"""The Open Inference Protocol's outputs and model metadata, for REST and gRPC alike: what the
model answers (`churn_probability` FP64, `will_churn` BOOL, shape [N]) and how a request's
`outputs` choose among them; inputs are `api/v2/tensors.py`'s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from churn_mlops.api.v2.inputs import ModelInputs
from churn_mlops.api.v2.tensors import TensorError

OUTPUT_PROBABILITY = "churn_probability"
OUTPUT_WILL_CHURN = "will_churn"
OUTPUT_DATATYPES = {OUTPUT_PROBABILITY: "FP64", OUTPUT_WILL_CHURN: "BOOL"}


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output the caller asked for; `binary` None leaves it to the request's default."""

    name: str
    binary: bool | None = None


def model_metadata(
    name: str, versions: Sequence[str], inputs: ModelInputs, platform: str = "churn-mlops"
) -> dict[str, Any]:
    """The V2 `ModelMetadataResponse`: one input per feature of the model's schema (shape [-1],
    its preferred datatype) and the two outputs."""
    return {
        "name": name,
        "versions": list(versions),
        "platform": platform,
        "inputs": [dict(tensor) for tensor in inputs.metadata],
        "outputs": [
            {"name": output, "datatype": datatype, "shape": [-1]}
            for output, datatype in OUTPUT_DATATYPES.items()
        ],
    }


def encode_outputs(
    probabilities: npt.NDArray[np.float64],
    will_churn: npt.NDArray[np.bool_],
    requested_outputs: Sequence[RequestedOutput] | None,
    binary: bool,
) -> tuple[dict[str, Any], list[bytes]]:
    """({"outputs": [...]}, the binary blocks in output order) for the outputs asked for (all
    of them when None or empty); an output is binary when it asks, else when `binary`."""
    requested = list(requested_outputs or ())
    if not requested:
        requested = [RequestedOutput(name) for name in OUTPUT_DATATYPES]
    seen: set[str] = set()
    outputs: list[dict[str, Any]] = []
    blocks: list[bytes] = []
    count = len(probabilities)
    for output in requested:
        if output.name not in OUTPUT_DATATYPES:
            raise TensorError(f"unexpected output '{output.name}'")
        if output.name in seen:
            raise TensorError(f"output '{output.name}' is asked for more than once")
        seen.add(output.name)
        values: npt.NDArray[Any] = (
            probabilities.astype("<f8", copy=False)
            if output.name == OUTPUT_PROBABILITY
            else will_churn.astype(np.bool_, copy=False)
        )
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": OUTPUT_DATATYPES[output.name],
            "shape": [count],
        }
        if binary if output.binary is None else output.binary:
            block = values.tobytes()
            entry["parameters"] = {"binary_data_size": len(block)}
            blocks.append(block)
        else:
            entry["data"] = values.tolist()
        outputs.append(entry)
    return {"outputs": outputs}, blocks


_ONE_PROBABILITY = b',"outputs":[{"name":"churn_probability","datatype":"FP64","shape":[1],"data":['
_ONE_DECISION = b']},{"name":"will_churn","datatype":"BOOL","shape":[1],"data":['


def one_row_answer(
    model_name: str, version: str, request_id: str | None, probability: float, will_churn: bool
) -> bytes:
    """The JSON answer of one row with both outputs as JSON data, the usual single prediction,
    put together from fixed parts instead of an output document encoded whole; the same bytes
    (tests/api/v2/test_single_row.py)."""
    head: dict[str, Any] = {"model_name": model_name, "model_version": version}
    if request_id is not None:
        head["id"] = request_id
    return b"".join(
        (
            orjson.dumps(head)[:-1],
            _ONE_PROBABILITY,
            orjson.dumps(probability),
            _ONE_DECISION,
            b"true]}]}" if will_churn else b"false]}]}",
        )
    )
