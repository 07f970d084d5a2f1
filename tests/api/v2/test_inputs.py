"""api/v2/inputs.py: each kind of feature's tensor, from a schema written for the cases the
generated datasets do not have (a nullable boolean, a nullable refused categorical, a 0/1 flag,
an unbounded number), decoded to the encoder's rows."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from churn_mlops.api.v2.inputs import ModelInputs, accepted_datatypes, model_inputs
from churn_mlops.api.v2.tensors import FIXED_DTYPES, InputTensor, TensorError, decode_inputs
from churn_mlops.core.schema import FeatureSchema, FeatureSpec, TargetSpec
from churn_mlops.data.telco_example import TELCO_SCHEMA
from churn_mlops.model.features import FeatureEncoder

SCHEMA = FeatureSchema(
    features=(
        FeatureSpec("tier", "categorical", "Tier", nullable=True, values=("gold", "silver")),
        FeatureSpec("trial", "boolean", "Trial", nullable=True),
        FeatureSpec("promo", "integer", "Promo", minimum=0, maximum=1),
        FeatureSpec("balance", "number", "Balance"),
    ),
    target=TargetSpec("Churned"),
)
# "silver" is a value the schema accepts that training never saw: NaN, as the encoder reads it.
ENCODER = FeatureEncoder(SCHEMA.names, {"tier": ["gold"]})


@pytest.fixture(scope="module")
def inputs() -> ModelInputs:
    return model_inputs("test-inputs-v1", SCHEMA, ENCODER)


def test_datatypes_by_kind() -> None:
    assert {spec.name: accepted_datatypes(spec) for spec in SCHEMA.features} == {
        "tier": ("BYTES",),
        "trial": ("FP64", "FP32", "BOOL"),
        "promo": ("INT64", "INT32", "BOOL"),
        "balance": ("FP64", "FP32"),
    }
    telco = {spec.name: accepted_datatypes(spec)[0] for spec in TELCO_SCHEMA.features}
    assert telco["total_charges"] == "FP64"
    assert telco["senior_citizen"] == "INT64"


def test_inputs_are_built_once_per_version(inputs: ModelInputs) -> None:
    assert model_inputs("test-inputs-v1", SCHEMA, ENCODER) is inputs


def tensor(name: str, datatype: str, values: list[Any], binary: bool) -> InputTensor:
    if not binary:
        return InputTensor(name, datatype, (len(values),), data=values)
    if datatype == "BYTES":
        raw = b"".join(len(v).to_bytes(4, "little") + v.encode() for v in values)
    else:
        raw = np.asarray(values, dtype=FIXED_DTYPES[datatype]).tobytes()
    return InputTensor(name, datatype, (len(values),), raw=raw)


@pytest.mark.parametrize("binary", [True, False])
def test_missing_values_and_flags_decode_as_the_encoder(inputs: ModelInputs, binary: bool) -> None:
    tensors = [
        tensor("tier", "BYTES", ["gold", "", "silver"], binary),
        tensor("trial", "FP64", [1.0, math.nan, 0.0], binary),
        tensor("promo", "BOOL", [True, False, True], binary),
        tensor("balance", "FP64", [-12.5, 1e9, 0.0], binary),
    ]
    decoded = decode_inputs(tensors, inputs, 10)
    expected = ENCODER.encode_columns(
        {
            "tier": ["gold", None, "silver"],
            "trial": [True, None, False],
            "promo": [1, 0, 1],
            "balance": [-12.5, 1e9, 0.0],
        }
    )
    np.testing.assert_array_equal(decoded.rows, expected)


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize(
    ("name", "datatype", "values", "message"),
    [
        ("tier", "BYTES", ["gold", "bronze"], "input 'tier' row 1: 'bronze' is not one of "
         "'gold', 'silver' (or empty, for missing)"),
        ("trial", "FP64", [0.0, 0.5], "input 'trial' row 1: 0.5 is not a boolean (0 or 1) or NaN"),
        ("promo", "INT64", [0, 2], "input 'promo' row 1: 2 is not an integer from 0 to 1"),
        ("balance", "FP64", [0.0, math.inf], "input 'balance' row 1: inf is not a finite number"),
    ],
)  # fmt: skip
def test_refusals_name_tensor_and_row(
    inputs: ModelInputs, binary: bool, name: str, datatype: str, values: list[Any], message: str
) -> None:
    good = {
        "tier": tensor("tier", "BYTES", ["gold", "gold"], binary),
        "trial": tensor("trial", "BOOL", [True, False], binary),
        "promo": tensor("promo", "INT64", [0, 1], binary),
        "balance": tensor("balance", "FP64", [1.0, 2.0], binary),
    }
    good[name] = tensor(name, datatype, values, binary)
    with pytest.raises(TensorError) as refused:
        decode_inputs(list(good.values()), inputs, 10)
    assert refused.value.detail == message
