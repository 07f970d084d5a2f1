"""api/v2: a model trained on other columns than Telco's (tests/fixtures/own_data.py) gets its
V2 inputs from its schema: metadata, decoding equal to the encoder's rows (nulls and an unseen
plan included), refusals naming the tensor and row, and the explained values by kind."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson
import pytest

from churn_mlops.api.v2.explain import values_read
from churn_mlops.api.v2.inputs import ModelInputs, inputs_of
from churn_mlops.api.v2.outputs import model_metadata
from churn_mlops.api.v2.tensors import FIXED_DTYPES, InputTensor, TensorError, decode_inputs
from churn_mlops.data import Dataset
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.prediction.decoding import RequestDecoder
from churn_mlops.prediction.strict_parser import StrictBodyParser
from tests.fixtures.own_data import OWN_FEATURES, REGIONS

MAX_ROWS = 10_000
OWN_DATATYPES = {
    "region": "BYTES",
    "plan": "BYTES",
    "seats": "INT64",
    "monthly_spend": "FP64",
    "logins_last30d": "FP64",  # nullable integer: NaN says missing
    "has_support_contract": "BOOL",
}


def bytes_block(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def own_tensors(columns: dict[str, list[Any]], *, binary: bool) -> list[InputTensor]:
    """The tensors a tritonclient caller builds from the metadata's datatypes; None is an empty
    BYTES element, or NaN in FP64."""
    tensors = []
    for name in OWN_FEATURES:
        datatype = OWN_DATATYPES[name]
        column = columns[name]
        count = len(column)
        if datatype == "BYTES":
            texts = ["" if v is None else v for v in column]
            raw = bytes_block(texts) if binary else None
            tensors.append(InputTensor(name, datatype, (count,), None if binary else texts, raw))
            continue
        if datatype == "FP64":
            column = [math.nan if v is None else v for v in column]
        if binary:
            raw = np.asarray(column, dtype=FIXED_DTYPES[datatype]).tobytes()
            tensors.append(InputTensor(name, datatype, (count, 1), raw=raw))
        else:
            tensors.append(InputTensor(name, datatype, (count,), data=column))
    return tensors


@pytest.fixture(scope="module")
def inputs(own_artifact: ModelArtifact) -> ModelInputs:
    return inputs_of(own_artifact)


@pytest.fixture(scope="module")
def columns(own_dataset: Dataset) -> dict[str, list[Any]]:
    """The first 500 training rows, with an unseen plan and a null of each nullable feature."""
    columns = {name: list(values[:500]) for name, values in own_dataset.columns.items()}
    columns["plan"][3] = "platinum"
    columns["plan"][4] = None
    columns["logins_last30d"][5] = None
    return columns


def test_metadata_lists_the_schema_inputs(inputs: ModelInputs, own_artifact: ModelArtifact) -> None:
    document = model_metadata("churn", [own_artifact.version], inputs)
    assert [(i["name"], i["datatype"], i["shape"]) for i in document["inputs"]] == [
        (name, OWN_DATATYPES[name], [-1]) for name in OWN_FEATURES
    ]


@pytest.mark.parametrize("binary", [True, False])
def test_rows_equal_the_encoders(
    inputs: ModelInputs, own_artifact: ModelArtifact, columns: dict[str, list[Any]], binary: bool
) -> None:
    expected = own_artifact.encoder.encode_columns(columns)
    decoded = decode_inputs(own_tensors(columns, binary=binary), inputs, MAX_ROWS)
    np.testing.assert_array_equal(decoded.rows, expected)
    plan = inputs.by_name["plan"].column
    assert math.isnan(decoded.rows[3, plan])
    assert math.isnan(decoded.rows[4, plan])
    assert math.isnan(decoded.rows[5, inputs.by_name["logins_last30d"].column])


@pytest.mark.parametrize("binary", [True, False])
def test_rows_equal_predict_batch_rows(
    inputs: ModelInputs, own_artifact: ModelArtifact, columns: dict[str, list[Any]], binary: bool
) -> None:
    parser = StrictBodyParser(MAX_ROWS, schema=own_artifact.schema)
    decoder = RequestDecoder(own_artifact.encoder, parser)
    count = len(columns["region"])
    bodies = [{"features": {n: columns[n][i] for n in OWN_FEATURES}} for i in range(count)]
    _, expected = decoder.batch(orjson.dumps(bodies))
    decoded = decode_inputs(own_tensors(columns, binary=binary), inputs, MAX_ROWS)
    np.testing.assert_array_equal(decoded.rows, expected)
    for index in (3, 4, 5):  # the unseen plan and the nulls
        _, row = decoder.single(orjson.dumps(bodies[index]))
        one = {name: [values[index]] for name, values in columns.items()}
        np.testing.assert_array_equal(
            decode_inputs(own_tensors(one, binary=False), inputs, 1).rows, row
        )


def test_single_json_rows_equal_the_encoders(
    inputs: ModelInputs, own_artifact: ModelArtifact, columns: dict[str, list[Any]]
) -> None:
    for index in range(8):
        row = {name: [values[index]] for name, values in columns.items()}
        decoded = decode_inputs(own_tensors(row, binary=False), inputs, 1)
        np.testing.assert_array_equal(decoded.rows, own_artifact.encoder.encode_columns(row))


def test_narrow_and_natural_datatypes_are_accepted(
    inputs: ModelInputs, own_artifact: ModelArtifact, columns: dict[str, list[Any]]
) -> None:
    sample = {name: values[:20] for name, values in columns.items()}
    sample["logins_last30d"] = [0 if v is None else v for v in sample["logins_last30d"]]
    tensors = []
    for tensor in own_tensors(sample, binary=True):
        if tensor.name in ("seats", "logins_last30d"):
            values = np.asarray(sample[tensor.name])
            tensor = InputTensor(
                tensor.name, "INT32", tensor.shape, raw=values.astype("<i4").tobytes()
            )
        elif tensor.name == "monthly_spend":
            values = np.asarray(sample[tensor.name])
            tensor = InputTensor(
                tensor.name, "FP32", tensor.shape, raw=values.astype("<f4").tobytes()
            )
        tensors.append(tensor)
    decoded = decode_inputs(tensors, inputs, MAX_ROWS)
    expected = own_artifact.encoder.encode_columns(
        {**sample, "monthly_spend": np.float32(sample["monthly_spend"]).tolist()}
    )
    np.testing.assert_array_equal(decoded.rows, expected)


def refusal(tensors: list[InputTensor], inputs: ModelInputs) -> str:
    with pytest.raises(TensorError) as raised:
        decode_inputs(tensors, inputs, MAX_ROWS)
    assert raised.value.status == 400
    return raised.value.detail


def changed(columns: dict[str, list[Any]], name: str, value: Any) -> dict[str, list[Any]]:
    three = {n: v[:3] for n, v in columns.items()}
    three[name] = [*three[name][:1], value, *three[name][2:]]
    return three


@pytest.mark.parametrize("binary", [True, False])
def test_unseen_region_names_tensor_and_row(
    inputs: ModelInputs, columns: dict[str, list[Any]], binary: bool
) -> None:
    detail = refusal(own_tensors(changed(columns, "region", "region-99"), binary=binary), inputs)
    listed = ", ".join(repr(r) for r in REGIONS[:30])
    assert detail == f"input 'region' row 1: 'region-99' is not one of {listed}, ... (50 values)"


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("seats", 0, "input 'seats' row 1: 0 is not an integer from 1 to 100000"),
        ("seats", 100_001, "input 'seats' row 1: 100001 is not an integer from 1 to 100000"),
        ("logins_last30d", 2.5, "input 'logins_last30d' row 1: 2.5 is not an integer from 0 to "
         "120 or NaN"),
        ("monthly_spend", math.nan, "input 'monthly_spend' row 1: nan is not a number from 0.0"),
        ("region", None, "input 'region' row 1: '' is not one of 'region-00'"),
        ("plan", "x" * 65, "input 'plan' row 1: '" + "x" * 65 + "' is not a text of 1 to 64 "
         "characters (or empty, for missing)"),
    ],
)  # fmt: skip
def test_bad_values_name_tensor_and_row(
    inputs: ModelInputs,
    columns: dict[str, list[Any]],
    binary: bool,
    name: str,
    value: Any,
    message: str,
) -> None:
    assert refusal(own_tensors(changed(columns, name, value), binary=binary), inputs).startswith(
        message
    )


def test_boolean_sent_as_bytes_or_int_is_refused(
    inputs: ModelInputs, columns: dict[str, list[Any]]
) -> None:
    tensors = own_tensors({n: v[:2] for n, v in columns.items()}, binary=False)
    as_text = [
        InputTensor(t.name, "BYTES", t.shape, data=["true", "false"])
        if t.name == "has_support_contract"
        else t
        for t in tensors
    ]
    assert refusal(as_text, inputs) == (
        "input 'has_support_contract': datatype 'BYTES' is not BOOL"
    )
    as_int = [
        InputTensor(t.name, "INT64", t.shape, data=[1, 0])
        if t.name == "has_support_contract"
        else t
        for t in tensors
    ]
    assert refusal(as_int, inputs) == "input 'has_support_contract': datatype 'INT64' is not BOOL"


def test_missing_and_unexpected_tensors(inputs: ModelInputs, columns: dict[str, list[Any]]) -> None:
    tensors = own_tensors({n: v[:2] for n, v in columns.items()}, binary=True)
    without_plan = [t for t in tensors if t.name != "plan"]
    assert refusal(without_plan, inputs) == "missing input 'plan'"
    telco = InputTensor("tenure", "INT64", (2,), data=[1, 2])
    assert refusal([*tensors, telco], inputs) == "unexpected input 'tenure'"


def test_values_read_by_kind(inputs: ModelInputs, columns: dict[str, list[Any]]) -> None:
    sample = {n: v[:6] for n, v in columns.items()}
    rows = decode_inputs(own_tensors(sample, binary=True), inputs, MAX_ROWS).rows
    values = values_read(rows, inputs)
    assert inputs.names == OWN_FEATURES
    for index, read in enumerate(values):
        as_sent = {name: sample[name][index] for name in OWN_FEATURES}
        if index == 3:
            as_sent["plan"] = None  # unseen: read as missing
        as_sent["monthly_spend"] = float(str(np.float32(as_sent["monthly_spend"])))
        assert dict(zip(OWN_FEATURES, read, strict=True)) == as_sent
        assert type(read[-1]) is bool
