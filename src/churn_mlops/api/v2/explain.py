"""Reason codes on the Open Inference Protocol: `"parameters": {"explain": true}` in an infer
request adds an output `reasons`, BYTES of shape [N], each element one row's reasons as JSON
(the document `"explain": true` adds to a `/predict` answer).

A V2 response can only carry tensors, and a tensor of JSON strings is what stock clients read
without help (`InferResult.as_numpy("reasons")`). Listing `reasons` in `outputs` asks for them
too. A row's `value` is the value the model read: categories by name, numbers as the float32
the model compares (printed at float32's shortest, so 89.1 stays 89.1), a missing value null.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from churn_mlops.api.v2.inputs import ModelInputs
from churn_mlops.api.v2.outputs import RequestedOutput
from churn_mlops.api.v2.tensors import TensorError
from churn_mlops.model.features import FloatMatrix

OUTPUT_REASONS = "reasons"


def explain_asked(parameters: dict[str, Any], outputs: Sequence[RequestedOutput] | None) -> bool:
    """Whether the request asks for reasons: `parameters.explain`, or `reasons` in `outputs`."""
    explain = parameters.get("explain", False)
    if type(explain) is not bool:
        raise TensorError("parameters.explain must be true or false")
    return explain or any(output.name == OUTPUT_REASONS for output in outputs or ())


def without_reasons(
    outputs: Sequence[RequestedOutput] | None,
) -> tuple[list[RequestedOutput] | None, bool | None]:
    """The outputs other than `reasons` (None: all of them), and whether `reasons` asked to be
    binary (None: the request's default)."""
    if not outputs:
        return None, None
    others = [output for output in outputs if output.name != OUTPUT_REASONS]
    asked = [output.binary for output in outputs if output.name == OUTPUT_REASONS]
    return others, asked[0] if asked else None


def values_read(rows: FloatMatrix, inputs: ModelInputs) -> list[tuple[Any, ...]]:
    """Each row's feature values as the model read them, in the rows' column order: categories
    by name, integers as int, booleans as true/false, numbers at float32's shortest digits."""
    vocabularies = inputs.vocabularies
    kinds = [inputs.by_name[name].kind for name in inputs.names]

    def read(name: str, kind: str, value: float) -> Any:
        if math.isnan(value):
            return None
        if kind == "categorical":
            return vocabularies[name][int(value)]
        if kind == "integer":
            return int(value)
        if kind == "boolean":
            return value != 0
        return float(str(np.float32(value)))  # float32's shortest digits

    names = inputs.names
    return [
        tuple(read(n, k, v) for n, k, v in zip(names, kinds, row, strict=True))
        for row in rows.tolist()
    ]


def reasons_output(
    documents: Sequence[dict[str, Any]], binary: bool
) -> tuple[dict[str, Any], bytes | None]:
    """The `reasons` output entry and, when binary, its block (each element a 4-byte
    little-endian length then the JSON)."""
    encoded = [orjson.dumps(document) for document in documents]
    entry: dict[str, Any] = {"name": OUTPUT_REASONS, "datatype": "BYTES", "shape": [len(encoded)]}
    if not binary:
        entry["data"] = [item.decode() for item in encoded]
        return entry, None
    block = b"".join(len(item).to_bytes(4, "little") + item for item in encoded)
    entry["parameters"] = {"binary_data_size": len(block)}
    return entry, block
