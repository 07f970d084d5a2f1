"""api/v2/tensors.py: V2 tensors decode to exactly the rows `/predict` JSON decodes to, and
every malformed tensor is refused with a message naming the tensor (and the row)."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson
import pytest

from churn_mlops.api.v2.inputs import accepted_datatypes, inputs_of
from churn_mlops.api.v2.outputs import RequestedOutput, encode_outputs, model_metadata
from churn_mlops.api.v2.tensors import FIXED_DTYPES, InputTensor, TensorError, decode_inputs
from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import CATEGORICAL_FEATURES, FEATURE_NAMES, TELCO_SCHEMA
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.prediction.decoding import RequestDecoder
from churn_mlops.prediction.strict_parser import StrictBodyParser

MAX_ROWS = 20_000
ACCEPTED_DATATYPES = {spec.name: accepted_datatypes(spec) for spec in TELCO_SCHEMA.features}


def bytes_block(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def tensors_for(
    rows: list[dict[str, Any]], *, binary: bool, ids: list[str] | None = None
) -> list[InputTensor]:
    tensors = []
    for name in FEATURE_NAMES:
        column = [row[name] for row in rows]
        datatype = ACCEPTED_DATATYPES[name][0]
        if name == "total_charges":
            column = [math.nan if v is None else v for v in column]
        if not binary:
            tensors.append(InputTensor(name, datatype, (len(rows),), data=column))
        elif datatype == "BYTES":
            tensors.append(InputTensor(name, datatype, (len(rows),), raw=bytes_block(column)))
        else:
            block = np.asarray(column, dtype=FIXED_DTYPES[datatype]).tobytes()
            tensors.append(InputTensor(name, datatype, (len(rows), 1), raw=block))
    if ids is not None:
        raw = bytes_block(ids) if binary else None
        tensors.append(
            InputTensor("customer_id", "BYTES", (len(ids),), data=None if binary else ids, raw=raw)
        )
    return tensors


@pytest.fixture(scope="module")
def rows(dataset: TelcoDataset) -> list[dict[str, Any]]:
    return list(dataset.feature_rows())


@pytest.fixture(scope="module")
def json_decoder(artifact: ModelArtifact) -> RequestDecoder:
    return RequestDecoder(artifact.encoder, StrictBodyParser(max_batch_rows=MAX_ROWS))


@pytest.mark.parametrize("binary", [True, False])
def test_decode_inputs_equals_predict_batch_rows(
    rows: list[dict[str, Any]], json_decoder: RequestDecoder, artifact: ModelArtifact, binary: bool
) -> None:
    ids = [f"customer-{i}" for i in range(len(rows))]
    body = orjson.dumps([{"customer_id": c, "features": r} for c, r in zip(ids, rows, strict=True)])
    expected_ids, expected = json_decoder.batch(body)
    decoded = decode_inputs(
        tensors_for(rows, binary=binary, ids=ids), inputs_of(artifact), MAX_ROWS
    )
    assert any(row["total_charges"] is None for row in rows)  # the NaN rule is exercised
    np.testing.assert_array_equal(decoded.rows, expected)
    assert decoded.rows.dtype == np.float32
    assert decoded.customer_ids == expected_ids


def test_decode_inputs_without_ids_and_narrow_types(
    rows: list[dict[str, Any]], json_decoder: RequestDecoder, artifact: ModelArtifact
) -> None:
    sample = rows[:50]
    _, expected = json_decoder.batch(orjson.dumps([{"features": r} for r in sample]))
    tensors = []
    for tensor in tensors_for(sample, binary=True):
        if tensor.datatype in ("INT64", "FP64") and tensor.name != "monthly_charges":
            narrow = "INT32" if tensor.datatype == "INT64" else "FP32"
            values = np.frombuffer(tensor.raw or b"", dtype=FIXED_DTYPES[tensor.datatype])
            raw = values.astype(FIXED_DTYPES[narrow]).tobytes()
            tensor = InputTensor(tensor.name, narrow, tensor.shape, raw=raw)
        tensors.append(tensor)
    decoded = decode_inputs(tensors, inputs_of(artifact), MAX_ROWS)
    np.testing.assert_array_equal(decoded.rows, expected)
    assert decoded.customer_ids == [None] * len(sample)


def replace(tensors: list[InputTensor], name: str, **changes: Any) -> list[InputTensor]:
    result = []
    for tensor in tensors:
        if tensor.name == name:
            fields: dict[str, Any] = {
                "name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape,
                "data": tensor.data, "raw": tensor.raw,
            }  # fmt: skip
            fields.update(changes)
            tensor = InputTensor(**fields)
        result.append(tensor)
    return result


def refusal(
    tensors: list[InputTensor], artifact: ModelArtifact, max_rows: int = MAX_ROWS
) -> TensorError:
    with pytest.raises(TensorError) as raised:
        decode_inputs(tensors, inputs_of(artifact), max_rows)
    return raised.value


@pytest.fixture(scope="module")
def three(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return rows[:3]


def test_unknown_category_names_tensor_and_row(
    three: list[dict[str, Any]], artifact: ModelArtifact
) -> None:
    for binary in (True, False):
        changed = [dict(r) for r in three]
        changed[2]["contract"] = "Weekly"
        error = refusal(tensors_for(changed, binary=binary), artifact)
        assert error.status == 400
        assert error.detail == (
            "input 'contract' row 2: 'Weekly' is not one of "
            "'Month-to-month', 'One year', 'Two year'"
        )


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("tenure", 121, "input 'tenure' row 1: 121 is not an integer from 0 to 120"),
        ("senior_citizen", 2, "input 'senior_citizen' row 1: 2 is not"),
        ("monthly_charges", -1.0, "input 'monthly_charges' row 1: -1.0 is not a number"),
        ("monthly_charges", math.nan, "input 'monthly_charges' row 1: nan is not"),
        ("total_charges", math.inf, "input 'total_charges' row 1: inf is not"),
    ],
)
def test_out_of_range_numbers_name_tensor_and_row(
    three: list[dict[str, Any]], artifact: ModelArtifact, name: str, value: float, fragment: str
) -> None:
    changed = [dict(r) for r in three]
    changed[1][name] = value
    for binary in (True, False):
        assert refusal(tensors_for(changed, binary=binary), artifact).detail.startswith(fragment)


def test_missing_extra_and_duplicate_inputs(
    three: list[dict[str, Any]], artifact: ModelArtifact
) -> None:
    tensors = tensors_for(three, binary=True)
    assert refusal(tensors[1:], artifact).detail == "missing input 'gender'"
    extra = InputTensor("colour", "BYTES", (3,), data=["a", "b", "c"])
    assert refusal([*tensors, extra], artifact).detail == "unexpected input 'colour'"
    assert "more than once" in refusal([*tensors, tensors[0]], artifact).detail


def test_wrong_datatype_and_shapes(three: list[dict[str, Any]], artifact: ModelArtifact) -> None:
    tensors = tensors_for(three, binary=False)
    wrong = replace(tensors, "tenure", datatype="FP32")
    assert (
        refusal(wrong, artifact).detail == "input 'tenure': datatype 'FP32' is not INT64 or INT32"
    )
    two_dims = replace(tensors, "gender", shape=(3, 2))
    assert refusal(two_dims, artifact).detail == "input 'gender': shape [3, 2] is not [N] or [N, 1]"
    mismatched = replace(tensors, "tenure", shape=(2,), data=[1, 2])
    assert (
        refusal(mismatched, artifact).detail == "input 'tenure' has 2 rows but input 'gender' has 3"
    )
    short = replace(tensors, "tenure", data=[1, 2])
    assert refusal(short, artifact).detail == "input 'tenure': 2 values for shape [3]"
    text = replace(tensors, "tenure", data=["1", "2", "3"])
    assert refusal(text, artifact).detail == "input 'tenure': INT64 data must be numbers"


def test_too_many_rows_is_413(three: list[dict[str, Any]], artifact: ModelArtifact) -> None:
    error = refusal(tensors_for(three, binary=True), artifact, max_rows=2)
    assert error.status == 413
    assert "3 rows, more than the 2" in error.detail


def test_binary_sizes_checked(three: list[dict[str, Any]], artifact: ModelArtifact) -> None:
    tensors = tensors_for(three, binary=True)
    short = replace(tensors, "tenure", raw=np.zeros(2, "<i8").tobytes())
    assert refusal(short, artifact).detail == (
        "input 'tenure': binary data is 16 bytes, shape [3, 1] of INT64 takes 24"
    )
    past = replace(
        tensors, "gender", raw=bytes_block(["Male", "Male"]) + struct.pack("<I", 50) + b"Male"
    )
    assert refusal(past, artifact).detail == (
        "input 'gender' row 2: element length runs past the binary data"
    )
    extra = replace(tensors, "gender", raw=bytes_block(["Male"] * 3) + b"x")
    assert "bytes past its 3 elements" in refusal(extra, artifact).detail
    both = replace(tensors, "gender", data=["Male"] * 3)
    assert "exactly one of data and binary data" in refusal(both, artifact).detail


def test_bad_customer_id_names_row(three: list[dict[str, Any]], artifact: ModelArtifact) -> None:
    error = refusal(tensors_for(three, binary=True, ids=["a", "b\x00", "c"]), artifact)
    assert error.detail.startswith("input 'customer_id' row 1: not a text")


def test_model_metadata_lists_every_feature(artifact: ModelArtifact) -> None:
    document = model_metadata("churn", [artifact.info.version], inputs_of(artifact))
    assert [i["name"] for i in document["inputs"]] == list(FEATURE_NAMES)
    by_name = {i["name"]: i["datatype"] for i in document["inputs"]}
    assert {by_name[n] for n in CATEGORICAL_FEATURES} == {"BYTES"}
    assert by_name["tenure"] == "INT64"
    assert by_name["total_charges"] == "FP64"
    assert all(i["shape"] == [-1] for i in document["inputs"])
    assert document["versions"] == [artifact.info.version]
    assert [(o["name"], o["datatype"]) for o in document["outputs"]] == [
        ("churn_probability", "FP64"), ("will_churn", "BOOL"),
    ]  # fmt: skip


def test_encode_outputs_json_binary_and_subset() -> None:
    probabilities = np.array([0.25, 0.75])
    will_churn = probabilities >= 0.5
    document, blocks = encode_outputs(probabilities, will_churn, None, binary=False)
    assert blocks == []
    assert document["outputs"][0]["data"] == [0.25, 0.75]
    assert document["outputs"][1]["data"] == [False, True]
    document, blocks = encode_outputs(
        probabilities, will_churn, [RequestedOutput("will_churn", binary=True)], binary=False
    )
    assert [o["name"] for o in document["outputs"]] == ["will_churn"]
    assert blocks == [b"\x00\x01"]
    assert document["outputs"][0]["parameters"] == {"binary_data_size": 2}
    _, blocks = encode_outputs(probabilities, will_churn, None, binary=True)
    assert np.frombuffer(blocks[0], "<f8").tolist() == [0.25, 0.75]
    with pytest.raises(TensorError, match="unexpected output 'score'"):
        encode_outputs(probabilities, will_churn, [RequestedOutput("score")], binary=True)


def test_single_json_rows_equal_predict_rows(
    rows: list[dict[str, Any]], json_decoder: RequestDecoder, artifact: ModelArtifact
) -> None:
    nulls = [row for row in rows if row["total_charges"] is None][:3]
    for row in [*rows[:20], *nulls]:
        expected_id, expected = json_decoder.single(
            orjson.dumps({"customer_id": "c-1", "features": row})
        )
        decoded = decode_inputs(
            tensors_for([row], binary=False, ids=["c-1"]), inputs_of(artifact), 1
        )
        np.testing.assert_array_equal(decoded.rows, expected)
        assert decoded.customer_ids == [expected_id]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("contract", "Weekly", "input 'contract' row 0: 'Weekly' is not one of"),
        ("tenure", 1.5, "input 'tenure' row 0: 1.5 is not an integer from 0 to 120"),
        ("tenure", True, "input 'tenure': INT64 data must be numbers"),
        ("monthly_charges", None, "input 'monthly_charges': FP64 data must be numbers"),
    ],
)
def test_single_json_row_refusals_are_the_general_ones(
    three: list[dict[str, Any]], artifact: ModelArtifact, name: str, value: Any, message: str
) -> None:
    row = dict(three[0])
    row[name] = value
    assert refusal(tensors_for([row], binary=False), artifact).detail.startswith(message)
