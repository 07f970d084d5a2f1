"""api/v2/single_row.py: a one-row JSON request decoded by the model's own decoder gives the
rows and customer id of the general path, for Telco and for another schema; whatever is not
plainly valid is declined (None), for the general path to decode or refuse. The one-row answer
is byte for byte the document the general path encodes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest

from churn_mlops.api.v2.inputs import ModelInputs, inputs_of
from churn_mlops.api.v2.outputs import encode_outputs, one_row_answer
from churn_mlops.api.v2.single_row import (
    SingleRowDecoder,
    decode_rows,
    single_row_decoder,
    single_tensor_row,
)
from churn_mlops.api.v2.tensors import InputTensor, TensorError, decode_inputs
from churn_mlops.api.v2.wire import infer_response_body, parse_infer_request
from churn_mlops.data import Dataset, TelcoDataset
from churn_mlops.model.artifact import ModelArtifact
from tests.api.v2.test_own_schema import own_tensors
from tests.api.v2.test_tensors import bytes_block, tensors_for

MAX_ROWS = 100


def document_of(tensors: list[InputTensor], **extra: Any) -> dict[str, Any]:
    inputs = [
        {"name": t.name, "datatype": t.datatype, "shape": list(t.shape), "data": t.data}
        for t in tensors
    ]
    return {"inputs": inputs, **extra}


def general(body: bytes, inputs: ModelInputs) -> tuple[list[str | None], np.ndarray[Any, Any]]:
    request = parse_infer_request(body, None)
    decoded = decode_inputs(request.tensors(), inputs, MAX_ROWS)
    return decoded.customer_ids, decoded.rows


def assert_same_as_general(body: bytes, inputs: ModelInputs) -> None:
    single = SingleRowDecoder(inputs).decode(body)
    assert single is not None, body
    request, decoded = single
    ids, rows = general(body, inputs)
    np.testing.assert_array_equal(decoded.rows, rows)
    assert decoded.rows.dtype == np.float32
    assert decoded.customer_ids == ids
    expected = parse_infer_request(body, None)
    assert (request.id, request.outputs, request.binary_outputs, request.explain) == (
        expected.id,
        expected.outputs,
        expected.binary_outputs,
        expected.explain,
    )


@pytest.fixture(scope="module")
def telco_inputs(artifact: ModelArtifact) -> ModelInputs:
    return inputs_of(artifact)


@pytest.fixture(scope="module")
def telco_rows(dataset: TelcoDataset) -> list[dict[str, Any]]:
    return list(dataset.feature_rows())


def telco_body(row: dict[str, Any], **extra: Any) -> bytes:
    tensors = tensors_for([row], binary=False, ids=["7590-VHVEG"])
    document = document_of(tensors, **extra)
    for tensor in document["inputs"]:
        if tensor["name"] == "total_charges" and math.isnan(tensor["data"][0]):
            tensor["data"] = [None]  # orjson writes NaN as null; the decoder reads null
    return orjson.dumps(document)


def test_telco_rows_equal_the_general_path(
    telco_rows: list[dict[str, Any]], telco_inputs: ModelInputs
) -> None:
    nulls = [row for row in telco_rows if row["total_charges"] is None][:3]
    assert nulls
    for row in [*telco_rows[:200], *nulls]:
        assert_same_as_general(telco_body(row), telco_inputs)


@pytest.mark.parametrize(
    "extra",
    [
        {"id": "request-7"},
        {"parameters": {"binary_data_output": True}},
        {"outputs": [{"name": "will_churn"}]},
        {"parameters": {"explain": True}},
    ],
)
def test_the_request_parts_equal_the_general_path(
    telco_rows: list[dict[str, Any]], telco_inputs: ModelInputs, extra: dict[str, Any]
) -> None:
    assert_same_as_general(telco_body(telco_rows[0], **extra), telco_inputs)


def test_other_accepted_forms_equal_the_general_path(
    telco_rows: list[dict[str, Any]], telco_inputs: ModelInputs
) -> None:
    document = orjson.loads(telco_body(telco_rows[0]))
    for tensor in document["inputs"]:
        if tensor["name"] == "tenure":
            tensor["datatype"], tensor["shape"] = "INT32", [1, 1]
        elif tensor["name"] == "monthly_charges":
            tensor["datatype"], tensor["data"] = "FP32", [70]  # a whole number as FP32
        elif tensor["name"] == "senior_citizen":
            tensor["datatype"], tensor["data"] = "BOOL", [True]
        elif tensor["name"] == "gender":
            tensor["parameters"] = {}
    document["inputs"].reverse()  # any order
    assert_same_as_general(orjson.dumps(document), telco_inputs)


def edited(body: bytes, target: str, fields: dict[str, Any]) -> bytes:
    document = orjson.loads(body)
    for tensor in document["inputs"]:
        if tensor["name"] == target:
            tensor.update(fields)
    return orjson.dumps(document)


@pytest.mark.parametrize(
    ("name", "fields", "refused"),
    [
        ("contract", {"data": ["Weekly"]}, True),  # an unknown category
        ("tenure", {"data": [1.5]}, True),
        ("tenure", {"data": [2.0]}, False),  # a whole float: the general path reads 2
        ("tenure", {"data": [True]}, True),
        ("tenure", {"data": [-1]}, True),
        ("tenure", {"datatype": "FP64"}, True),
        ("monthly_charges", {"data": [None]}, True),
        ("monthly_charges", {"data": ["70"]}, True),
        ("senior_citizen", {"datatype": "BOOL"}, True),  # 0 sent as BOOL
        ("gender", {"shape": [2]}, True),
        ("gender", {"data": ["Female", "Male"], "shape": [2]}, True),
        ("gender", {"parameters": {"binary_data_size": 10}}, True),
        ("gender", {"name": "sex"}, True),
        ("customer_id", {"data": ["bad\nid"]}, True),
        ("customer_id", {"data": [""]}, True),
    ],
)
def test_what_is_not_plainly_valid_is_declined(
    telco_rows: list[dict[str, Any]],
    telco_inputs: ModelInputs,
    name: str,
    fields: dict[str, Any],
    refused: bool,
) -> None:
    body = edited(telco_body(telco_rows[0]), name, fields)
    assert SingleRowDecoder(telco_inputs).decode(body) is None
    # The general path still decides: a refusal, or the row.
    if refused:
        with pytest.raises(TensorError):
            general(body, telco_inputs)
    else:
        assert general(body, telco_inputs)[1].shape == (1, len(telco_inputs.names))


def test_a_missing_or_repeated_input_and_broken_json_are_declined(
    telco_rows: list[dict[str, Any]], telco_inputs: ModelInputs
) -> None:
    decoder = SingleRowDecoder(telco_inputs)
    document = orjson.loads(telco_body(telco_rows[0]))
    missing = {"inputs": document["inputs"][1:]}
    repeated = {"inputs": [*document["inputs"], document["inputs"][0]]}
    two_ids = {"inputs": [*document["inputs"], document["inputs"][-1]]}
    for broken in (missing, repeated, two_ids):
        assert decoder.decode(orjson.dumps(broken)) is None
    assert decoder.decode(b'{"inputs": [') is None
    nan = telco_body(telco_rows[0]).replace(
        b'"monthly_charges","datatype":"FP64","shape":[1],"data":[',
        b'"monthly_charges","datatype":"FP64","shape":[1],"data":[NaN,',
    )
    assert decoder.decode(nan) is None


def test_another_schema_equals_the_general_path(
    own_artifact: ModelArtifact, own_dataset: Dataset
) -> None:
    inputs = inputs_of(own_artifact)
    columns = {name: list(values[:100]) for name, values in own_dataset.columns.items()}
    columns["plan"][3] = "platinum"  # unseen, read as missing
    columns["plan"][4] = None
    columns["logins_last30d"][5] = None
    for index in range(100):
        one = {name: [values[index]] for name, values in columns.items()}
        document = document_of(own_tensors(one, binary=False))
        for tensor in document["inputs"]:
            if tensor["data"] == [math.nan]:
                tensor["data"] = [None]
        assert_same_as_general(orjson.dumps(document), inputs)


def test_the_decoder_is_built_once_per_model(telco_inputs: ModelInputs) -> None:
    assert single_row_decoder(telco_inputs) is single_row_decoder(telco_inputs)


@pytest.mark.parametrize("request_id", [None, "req-1", 'quote"and\\slash'])
def test_the_one_row_answer_is_the_general_document(request_id: str | None) -> None:
    rng = np.random.default_rng(7)
    for probability in [0.0, 1.0, 0.5, 1e-17, *rng.random(200).tolist()]:
        will_churn = probability >= 0.33
        outputs, blocks = encode_outputs(
            np.array([probability]), np.array([will_churn]), None, binary=False
        )
        document: dict[str, Any] = {"model_name": "churn", "model_version": "v1"}
        if request_id is not None:
            document["id"] = request_id
        document.update(outputs)
        expected, _ = infer_response_body(document, blocks)
        assert one_row_answer("churn", "v1", request_id, probability, will_churn) == expected


def assert_raw_same_as_general(tensors: list[InputTensor], inputs: ModelInputs) -> None:
    single = single_tensor_row(tensors, inputs)
    assert single is not None
    expected = decode_inputs(tensors, inputs, MAX_ROWS)
    np.testing.assert_array_equal(single.rows, expected.rows)
    assert single.rows.dtype == np.float32
    assert single.customer_ids == expected.customer_ids
    assert decode_rows(tensors, inputs, MAX_ROWS).customer_ids == expected.customer_ids


def test_binary_telco_rows_equal_the_general_path(
    telco_rows: list[dict[str, Any]], telco_inputs: ModelInputs
) -> None:
    nulls = [row for row in telco_rows if row["total_charges"] is None][:3]
    for index, row in enumerate([*telco_rows[:200], *nulls]):
        tensors = tensors_for([row], binary=True, ids=[f"c-{index}"])
        assert_raw_same_as_general(tensors, telco_inputs)


def test_binary_rows_of_another_schema_equal_the_general_path(
    own_artifact: ModelArtifact, own_dataset: Dataset
) -> None:
    inputs = inputs_of(own_artifact)
    columns = {name: list(values[:100]) for name, values in own_dataset.columns.items()}
    columns["plan"][3] = "platinum"
    columns["plan"][4] = None
    columns["logins_last30d"][5] = None
    for index in range(100):
        one = {name: [values[index]] for name, values in columns.items()}
        assert_raw_same_as_general(own_tensors(one, binary=True), inputs)


def replaced(tensors: list[InputTensor], name: str, **fields: Any) -> list[InputTensor]:
    return [InputTensor(**{**vars_of(t), **fields}) if t.name == name else t for t in tensors]


def vars_of(tensor: InputTensor) -> dict[str, Any]:
    return {field: getattr(tensor, field) for field in ("name", "datatype", "shape", "data", "raw")}


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("contract", {"raw": bytes_block(["Weekly"])}),
        ("contract", {"raw": bytes_block(["Month-to-month"])[:-1]}),  # length past the block
        ("contract", {"raw": bytes_block(["Month-to-month"]) + b"x"}),
        ("contract", {"raw": b"\x02\x00\x00\x00\xff\xfe"}),  # not UTF-8
        ("tenure", {"raw": np.array([1, 2], "<i8").tobytes()}),  # two elements for one row
        ("tenure", {"raw": np.array([-1], "<i8").tobytes()}),
        ("tenure", {"datatype": "FP64", "raw": np.array([1.0], "<f8").tobytes()}),
        ("monthly_charges", {"raw": np.array([np.inf], "<f8").tobytes()}),
        ("monthly_charges", {"raw": np.array([np.nan], "<f8").tobytes()}),
        ("gender", {"shape": (2,)}),
        ("customer_id", {"raw": bytes_block(["bad\nid"])}),
    ],
)
def test_binary_values_not_plainly_valid_are_declined_and_refused(
    telco_rows: list[dict[str, Any]], telco_inputs: ModelInputs, name: str, fields: dict[str, Any]
) -> None:
    tensors = replaced(tensors_for([telco_rows[0]], binary=True, ids=["c-1"]), name, **fields)
    assert single_tensor_row(tensors, telco_inputs) is None
    with pytest.raises(TensorError, match=name):
        decode_rows(tensors, telco_inputs, MAX_ROWS)


def test_a_bool_byte_other_than_0_or_1_is_left_to_the_general_path(
    telco_rows: list[dict[str, Any]], telco_inputs: ModelInputs
) -> None:
    tensors = tensors_for([telco_rows[0]], binary=True)
    tensors = replaced(tensors, "senior_citizen", datatype="BOOL", raw=b"\x02")
    assert single_tensor_row(tensors, telco_inputs) is None


def test_a_bool_flag_and_narrow_datatypes_are_read_as_the_general_path_reads_them(
    telco_rows: list[dict[str, Any]], telco_inputs: ModelInputs
) -> None:
    tensors = tensors_for([telco_rows[0]], binary=True)
    tensors = replaced(tensors, "senior_citizen", datatype="BOOL", raw=b"\x01")
    tensors = replaced(tensors, "tenure", datatype="INT32", raw=np.array([7], "<i4").tobytes())
    tensors = replaced(
        tensors, "monthly_charges", datatype="FP32", raw=np.array([70.35], "<f4").tobytes()
    )
    assert_raw_same_as_general(tensors, telco_inputs)
