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

from churn_mlops.api.v2.outputs import RequestedOutput
from churn_mlops.api.v2.tensors import TensorError
from churn_mlops.core.features import FEATURE_NAMES, INTEGER_FEATURES
from churn_mlops.model.features import FeatureEncoder, FloatMatrix

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


def values_read(rows: FloatMatrix, encoder: FeatureEncoder) -> list[tuple[Any, ...]]:
    """Each row's feature values as the model read them, in FEATURE_NAMES order."""
    vocabularies = encoder.vocabularies

    def read(name: str, value: float) -> Any:
        if math.isnan(value):
            return None
        if name in vocabularies:
            return vocabularies[name][int(value)]
        if name in INTEGER_FEATURES:
            return int(value)
        return float(str(np.float32(value)))  # float32's shortest digits

    return [
        tuple(read(name, value) for name, value in zip(FEATURE_NAMES, row, strict=True))
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
