"""The usual V2 REST request, one customer as JSON values, decoded by a decoder built for the
served model's inputs.

A generic decode of the request document builds a struct, a shape list and a data list per
input, which are then checked value by value in Python: most of what a V2 JSON request costs
beyond `/predict`. Here, once per model, each input becomes a msgspec struct
tagged by its name, with its datatypes, a one-row shape and its value's type (and bounds) as
msgspec types, so msgspec checks them in C while it parses; Python is left one step per input:
put the value, or its category's code, in its column.

The decoder declines (returns None) whatever is not plainly valid - a value of the wrong type
or out of bounds, an unseen category, more than one row, binary data, a bare NaN - and the
general path (`wire.parse_infer_request`, `tensors.decode_inputs`) then decodes or refuses it
with its exact message. So this path answers a subset of what the general one accepts, with
the same rows (tests/api/v2/test_single_row.py).

`decode_rows` reads any other one-row request, JSON or binary, element by element
(`single_tensor_row`) before it hands it to the general decoder.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Union

import msgspec
import numpy as np
from msgspec import Meta

from churn_mlops.api.v2.inputs import InputSpec, ModelInputs
from churn_mlops.api.v2.tensors import DecodedInputs, InputTensor, decode_inputs
from churn_mlops.api.v2.values import (
    CUSTOMER_ID_INPUT,
    MAX_CUSTOMER_ID_LENGTH,
    missing_category,
    plain_number,
    valid_customer_id,
)
from churn_mlops.api.v2.wire import InferRequest, OutputItem, infer_request

# What each input's value needs once msgspec has checked its type and bounds.
_VALUE = 0  # a number or boolean the column holds as it is
_WHOLE = 5  # an integer, held as the float the general path makes of it
_CODE = 1  # a category, looked up in the feature's codes (unseen: decline)
_CODE_OR_MISSING = 2  # a category that may be missing (nullable, or unseen read as missing)
_CHECKED = 3  # a value `values.plain_number` checks (nullable or mixed datatypes)
_CUSTOMER = 4

_ONE_ROW_SHAPE = Annotated[list[Literal[1]], Meta(min_length=1, max_length=2)]
_NO_PARAMETERS = Annotated[dict[str, Any], Meta(max_length=0)] | None
_CACHED_MODELS = 8


def _bounded(kind: type, spec: InputSpec) -> Any:
    """`kind` with the feature's bounds, as msgspec checks them."""
    bounds: dict[str, Any] = {}
    if math.isfinite(spec.low):
        bounds["ge"] = kind(math.ceil(spec.low)) if kind is int else float(spec.low)
    if math.isfinite(spec.high):
        bounds["le"] = kind(math.floor(spec.high)) if kind is int else float(spec.high)
    return Annotated[kind, Meta(**bounds)] if bounds else kind


def _value_type(spec: InputSpec) -> tuple[Any, int]:
    """(the msgspec type of the feature's one value, what the decoder does with it)."""
    if spec.lookup is not None:
        return (str, _CODE) if spec.plain_lookup else (str | None, _CODE_OR_MISSING)
    if spec.nullable or (spec.kind != "boolean" and "BOOL" in spec.datatypes):
        return Any, _CHECKED  # NaN/None for missing, or a flag sent as BOOL or as a number
    if spec.kind == "boolean":
        return bool, _VALUE
    if spec.kind == "number":
        return _bounded(float, spec), _VALUE
    return _bounded(int, spec), _WHOLE


def _input_struct(spec: InputSpec) -> type[msgspec.Struct]:
    value, action = _value_type(spec)
    fields: list[Any] = [
        ("datatype", Literal[spec.datatypes]),
        ("shape", _ONE_ROW_SHAPE),
        ("data", tuple[value]),  # type: ignore[valid-type]
        ("parameters", _NO_PARAMETERS, None),
    ]
    namespace = {"column": spec.column, "action": action, "spec": spec, "codes": spec.lookup}
    return msgspec.defstruct(
        f"Input_{spec.column}", fields, tag_field="name", tag=spec.name, namespace=namespace
    )


def _customer_struct() -> type[msgspec.Struct]:
    customer = Annotated[str, Meta(min_length=1, max_length=MAX_CUSTOMER_ID_LENGTH)]
    fields: list[Any] = [
        ("datatype", Literal["BYTES"]),
        ("shape", _ONE_ROW_SHAPE),
        ("data", tuple[customer]),
        ("parameters", _NO_PARAMETERS, None),
    ]
    namespace = {"column": -1, "action": _CUSTOMER, "spec": None, "codes": None}
    return msgspec.defstruct(
        "Input_customer_id", fields, tag_field="name", tag=CUSTOMER_ID_INPUT, namespace=namespace
    )


class SingleRowDecoder:
    """Decodes a one-row JSON V2 request of one model's inputs, or declines it."""

    def __init__(self, inputs: ModelInputs) -> None:
        structs = (*(_input_struct(spec) for spec in inputs.specs), _customer_struct())
        document = msgspec.defstruct(
            "SingleRowRequest",
            [
                ("inputs", list[Union[structs]]),  # type: ignore[valid-type]  # noqa: UP007
                ("id", str | None, None),
                ("parameters", dict[str, Any] | None, None),
                ("outputs", list[OutputItem] | None, None),
            ],
        )
        self._decoder = msgspec.json.Decoder(document)
        self._columns = len(inputs.names)

    def decode(self, body: bytes) -> tuple[InferRequest, DecodedInputs] | None:
        """The request and its one row, or None for the general path to decode."""
        try:
            document: Any = self._decoder.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
        row: list[Any] = [None] * self._columns
        customer_id = None
        for item in document.inputs:
            value = item.data[0]
            action = item.action
            if action == _CODE:
                value = item.codes.get(value)
            elif action == _WHOLE:
                value = float(value)
            elif action == _CUSTOMER:
                if customer_id is not None or not valid_customer_id(value):
                    return None
                customer_id = value
                continue
            elif action == _CODE_OR_MISSING:
                code = item.codes.get(value) if value is not None else None
                value = missing_category(item.spec, value) if code is None else code
            elif action == _CHECKED:
                value = plain_number(item.spec, item.datatype, value)
            if value is None or row[item.column] is not None:
                return None
            row[item.column] = value
        if None in row:
            return None
        request = infer_request(document, memoryview(b""), listed=[])
        return request, DecodedInputs([customer_id], np.array([row], dtype=np.float32))


_DECODERS: dict[int, tuple[ModelInputs, SingleRowDecoder]] = {}


def single_row_decoder(inputs: ModelInputs) -> SingleRowDecoder:
    """The decoder of a model's inputs, built on its first request and kept for the last few
    models served (as `inputs.model_inputs` keeps their inputs)."""
    cached = _DECODERS.get(id(inputs))
    if cached is not None and cached[0] is inputs:
        return cached[1]
    decoder = SingleRowDecoder(inputs)
    if len(_DECODERS) >= _CACHED_MODELS:
        del _DECODERS[next(iter(_DECODERS))]
    _DECODERS[id(inputs)] = (inputs, decoder)
    return decoder


def decode_rows(
    tensors: Sequence[InputTensor], inputs: ModelInputs, max_rows: int
) -> DecodedInputs:
    """The rows of a request's tensors: one row read value by value (numpy and the kernels cost
    more than they save on one value per column); any other request, or one row that is not
    plainly valid, by the general decoder."""
    return single_tensor_row(tensors, inputs) or decode_inputs(tensors, inputs, max_rows)


# A one-row tensor's shape.
_ONE_ROW = ((1,), (1, 1))
_DECLINED = object()
"""An element that is not plainly one valid value (None is one: a JSON null)."""

# Little-endian readers of one element of each fixed-size datatype but BOOL.
_ELEMENT = {
    "INT64": struct.Struct("<q"),
    "INT32": struct.Struct("<i"),
    "FP64": struct.Struct("<d"),
    "FP32": struct.Struct("<f"),
}


def _raw_value(datatype: str, raw: bytes | memoryview) -> Any:
    """The one element of a binary block, or _DECLINED when it is not exactly one plain one."""
    if datatype == "BYTES":
        if len(raw) < 4 or int.from_bytes(raw[:4], "little") != len(raw) - 4:
            return _DECLINED
        try:
            return bytes(raw[4:]).decode()
        except UnicodeDecodeError:
            return _DECLINED
    if datatype == "BOOL":
        return _DECLINED if len(raw) != 1 or raw[0] > 1 else raw[0] == 1
    element = _ELEMENT.get(datatype)
    if element is None or len(raw) != element.size:
        return _DECLINED
    return element.unpack(raw)[0]


def _element(tensor: InputTensor) -> Any:
    """A one-row tensor's value: its one JSON value, or its binary block's one element."""
    if tensor.shape not in _ONE_ROW:
        return _DECLINED
    data = tensor.data
    if data is not None:
        return data[0] if len(data) == 1 else _DECLINED
    return _DECLINED if tensor.raw is None else _raw_value(tensor.datatype, tensor.raw)


def single_tensor_row(tensors: Sequence[InputTensor], inputs: ModelInputs) -> DecodedInputs | None:
    """One row of tensors, each sent as JSON values or as a binary block (gRPC's
    `raw_input_contents`, Triton's binary extension), read element by element; None for
    anything not plainly valid, which the general decoder then decodes or refuses with its
    exact message."""
    specs = inputs.by_name
    row: list[float | None] = [None] * len(inputs.names)
    customer_id = None
    for tensor in tensors:
        value, datatype = _element(tensor), tensor.datatype
        if value is _DECLINED:
            return None
        if tensor.name == CUSTOMER_ID_INPUT:
            if customer_id is not None or datatype != "BYTES" or not valid_customer_id(value):
                return None
            customer_id = value
            continue
        spec = specs.get(tensor.name)
        if spec is None or row[spec.column] is not None or datatype not in spec.datatypes:
            return None
        if spec.lookup is not None:
            number = spec.lookup.get(value) if type(value) is str else None
            if number is None and not spec.plain_lookup:
                number = missing_category(spec, value)
        else:
            number = plain_number(spec, datatype, value)
        if number is None:
            return None
        row[spec.column] = number
    if None in row:
        return None
    return DecodedInputs([customer_id], np.array([row], dtype=np.float32))
