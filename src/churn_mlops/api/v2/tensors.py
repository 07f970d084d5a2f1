"""Open Inference Protocol (KServe V2) tensors to the model's rows and back, for any transport.

A request carries one tensor per feature of the served model's schema (api/v2/inputs.py says
which datatypes each takes), each either as typed values (`data`: JSON over
REST, typed contents over gRPC) or as one little-endian binary block (`raw`: Triton's binary
extension over REST, `raw_input_contents` over gRPC). Decoding builds the float32 matrix that
`RequestDecoder` builds from the same customers sent as `/predict` JSON - the same category
codes (a value the schema accepts but training never saw is NaN), the same float64-then-float32
rounding, NaN for a missing value of a nullable feature - so both protocols answer the same
probabilities.
Values the JSON schema refuses are refused here too, with a message naming the tensor and row.
Binary blocks are decoded a whole column at a time with numpy; BYTES elements and their
category lookups run in numba kernels (api/v2/kernels.py).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np
import numpy.typing as npt

from churn_mlops.api.v2 import kernels
from churn_mlops.api.v2.inputs import InputSpec, ModelInputs
from churn_mlops.api.v2.values import (
    CUSTOMER_ID_INPUT,
    MAX_CUSTOMER_ID_LENGTH,
    missing_category,
    valid_customer_id,
)
from churn_mlops.core.errors import ServiceError
from churn_mlops.model.features import FloatMatrix

# Little-endian element types of the fixed-size datatypes (BYTES is length-prefixed).
FIXED_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}


class TensorError(ServiceError):
    """A request the protocol refuses: 400, or 413 for more rows than a request may have."""

    def __init__(self, detail: str, status: int = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(detail)
        self.status = status


@dataclass(slots=True)
class InputTensor:
    """One input tensor as a transport received it: exactly one of `data` (flattened row-major
    values) and `raw` (a little-endian binary block)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Sequence[Any] | None = None
    raw: bytes | memoryview | None = None


@dataclass(frozen=True, slots=True)
class DecodedInputs:
    customer_ids: list[str | None]
    rows: FloatMatrix


def _rows_of(tensor: InputTensor, max_rows: int) -> int:
    shape = tensor.shape
    if len(shape) not in (1, 2) or any(d < 0 for d in shape) or (len(shape) == 2 and shape[1] != 1):
        raise TensorError(f"input '{tensor.name}': shape {list(shape)} is not [N] or [N, 1]")
    rows = shape[0]
    if rows == 0:
        raise TensorError(f"input '{tensor.name}': shape {list(shape)} has no rows")
    if rows > max_rows:
        raise TensorError(
            f"input '{tensor.name}': {rows} rows, more than the {max_rows} a request may have",
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        )
    return rows


def _check_names(tensors: Sequence[InputTensor], inputs: ModelInputs) -> None:
    names = [tensor.name for tensor in tensors]
    for name in names:
        if name not in inputs.by_name and name != CUSTOMER_ID_INPUT:
            raise TensorError(f"unexpected input '{name}'")
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise TensorError(f"input '{twice}' is given more than once")
    missing = [spec.name for spec in inputs.specs if spec.name not in names]
    if missing:
        raise TensorError(
            f"missing input '{missing[0]}'"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )


def decode_inputs(
    tensors: Sequence[InputTensor], inputs: ModelInputs, max_rows: int
) -> DecodedInputs:
    """The float32 rows (the model's column order) and customer ids of a request's input
    tensors; TensorError (400, or 413 past `max_rows`) naming the tensor, and the row for a bad
    value."""
    _check_names(tensors, inputs)
    count = -1
    for tensor in tensors:
        rows = _rows_of(tensor, max_rows)
        if count == -1:
            count, first = rows, tensor.name
        elif rows != count:
            raise TensorError(
                f"input '{tensor.name}' has {rows} rows but input '{first}' has {count}"
            )
    matrix = np.empty((count, len(inputs.names)), dtype=np.float32)
    customer_ids: list[str | None] = [None] * count
    for tensor in tensors:
        if tensor.name == CUSTOMER_ID_INPUT:
            customer_ids = _customer_ids(tensor, count)
            continue
        spec = inputs.by_name[tensor.name]
        if tensor.datatype not in spec.datatypes:
            raise TensorError(
                f"input '{tensor.name}': datatype {tensor.datatype!r} is not "
                + " or ".join(spec.datatypes)
            )
        if spec.table is not None:
            matrix[:, spec.column] = _categorical(tensor, count, spec, spec.table)
        else:
            matrix[:, spec.column] = _numeric(tensor, count, spec)
    return DecodedInputs(customer_ids, matrix)


def _only_one(tensor: InputTensor) -> None:
    if (tensor.data is None) == (tensor.raw is None):
        raise TensorError(f"input '{tensor.name}' needs exactly one of data and binary data")


def _bytes_block(
    tensor: InputTensor, count: int
) -> tuple[kernels.Block, kernels.Offsets, kernels.Offsets]:
    block = np.frombuffer(tensor.raw or b"", dtype=np.uint8)
    starts, lengths, bad = kernels.split_bytes(block, count)
    if bad == count:
        raise TensorError(f"input '{tensor.name}': binary data has bytes past its {count} elements")
    if bad >= 0:
        raise TensorError(
            f"input '{tensor.name}' row {bad}: element length runs past the binary data"
        )
    return block, starts, lengths


def _refuse_value(tensor: InputTensor, row: int, value: Any, spec: InputSpec) -> typing.NoReturn:
    raise TensorError(f"input '{tensor.name}' row {row}: {value!r} is not {spec.refused_text()}")


def _categorical(
    tensor: InputTensor, count: int, spec: InputSpec, table: kernels.CategoryTable
) -> FloatMatrix:
    _only_one(tensor)
    if tensor.raw is not None:
        block, starts, lengths = _bytes_block(tensor, count)
        if spec.plain_lookup:
            codes, bad = table.lookup(block, starts, lengths)
            if bad >= 0:
                value = bytes(block[starts[bad] : starts[bad] + lengths[bad]])
                _refuse_value(tensor, bad, value.decode("utf-8", "replace"), spec)
            return codes
        codes, found = table.lookup_each(block, starts, lengths)
        if not found.all():
            _check_missing_elements(tensor, spec, block, starts, lengths, found)
        return codes
    data = _flat(tensor, count)
    lookup = (spec.lookup or {}).get
    codes_list = []
    for row, value in enumerate(data):
        code = lookup(value) if isinstance(value, str) else None
        if code is None and not spec.plain_lookup:
            code = missing_category(spec, value)
        if code is None:
            _refuse_value(tensor, row, value, spec)
        codes_list.append(code)
    return np.array(codes_list, dtype=np.float32)


def _check_missing_elements(
    tensor: InputTensor,
    spec: InputSpec,
    block: kernels.Block,
    starts: kernels.Offsets,
    lengths: kernels.Offsets,
    found: npt.NDArray[np.bool_],
) -> None:
    """Refuse the first unknown element that is not a missing value (NaN already)."""
    raw = block.tobytes()
    checked: dict[bytes, bool] = {}
    for row in np.flatnonzero(~found).tolist():
        start = int(starts[row])
        element = raw[start : start + int(lengths[row])]
        accepted = checked.get(element)
        if accepted is None:
            try:
                text = element.decode()
            except UnicodeDecodeError:
                text = None
            accepted = text is not None and missing_category(spec, text) is not None
            checked[element] = accepted
        if not accepted:
            _refuse_value(tensor, row, element.decode("utf-8", "replace"), spec)


def _flat(tensor: InputTensor, count: int) -> Sequence[Any]:
    data = tensor.data if tensor.data is not None else ()
    if len(data) == count and not (count and isinstance(data[0], list)):
        return data
    flat = (
        np.asarray(data, dtype=object).reshape(-1) if data and isinstance(data[0], list) else data
    )
    if len(flat) != count:
        raise TensorError(
            f"input '{tensor.name}': {len(flat)} values for shape {list(tensor.shape)}"
        )
    return list(flat)


def _numeric_values(tensor: InputTensor, count: int, spec: InputSpec) -> npt.NDArray[Any]:
    _only_one(tensor)
    if tensor.raw is not None:
        dtype = FIXED_DTYPES[tensor.datatype]
        expected = count * dtype.itemsize
        if len(tensor.raw) != expected:
            raise TensorError(
                f"input '{tensor.name}': binary data is {len(tensor.raw)} bytes, shape "
                f"{list(tensor.shape)} of {tensor.datatype} takes {expected}"
            )
        return np.frombuffer(tensor.raw, dtype=dtype)
    data = _flat(tensor, count)
    values = np.asarray(data)
    if values.dtype.kind == "O" and spec.nullable:
        kinds = (bool,) if tensor.datatype == "BOOL" else (int, float)
        if all(v is None or type(v) in kinds for v in data):
            return np.array(data, dtype=np.float64)
    if tensor.datatype == "BOOL":
        if values.dtype.kind != "b":
            raise TensorError(f"input '{tensor.name}': BOOL data must be true or false")
        return values
    if values.dtype.kind not in "iuf":
        raise TensorError(f"input '{tensor.name}': {tensor.datatype} data must be numbers")
    return values


def _numeric(tensor: InputTensor, count: int, spec: InputSpec) -> npt.NDArray[np.float64]:
    values = _numeric_values(tensor, count, spec).astype(np.float64)
    low, high = spec.low, spec.high
    with np.errstate(invalid="ignore"):
        bad = ~((values >= low) & (values <= high))
        if math.isinf(low) and math.isinf(high):
            bad |= ~np.isfinite(values)
        if spec.integral:
            bad |= values != np.floor(values)
        if spec.nullable:
            bad &= ~np.isnan(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = values[row]
        whole = spec.integral and math.isfinite(value) and value.is_integer()
        shown = int(value) if whole else float(value)
        if spec.kind == "boolean":
            kind = "a boolean (0 or 1)"
        elif spec.integral:
            kind = "an integer"
        else:
            kind = "a number" if spec.range_text else "a finite number"
        nan_note = " or NaN" if spec.nullable else ""
        raise TensorError(
            f"input '{tensor.name}' row {row}: {shown!r} is not {kind}{spec.range_text}" + nan_note
        )
    return values


def _customer_ids(tensor: InputTensor, count: int) -> list[str | None]:
    if tensor.datatype != "BYTES":
        raise TensorError(f"input '{tensor.name}': datatype {tensor.datatype!r} is not BYTES")
    _only_one(tensor)
    if tensor.raw is not None:
        block, starts, lengths = _bytes_block(tensor, count)
        raw = bytes(block)
        ids: list[Any] = []
        for row, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist(), strict=True)):
            try:
                ids.append(raw[start : start + length].decode())
            except UnicodeDecodeError:
                raise TensorError(f"input '{tensor.name}' row {row}: not UTF-8") from None
    else:
        ids = list(_flat(tensor, count))
    for row, customer in enumerate(ids):
        if not valid_customer_id(customer):
            raise TensorError(
                f"input '{tensor.name}' row {row}: not a text of 1 to "
                f"{MAX_CUSTOMER_ID_LENGTH} characters without control characters"
            )
    return ids
