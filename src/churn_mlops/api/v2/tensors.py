"""Open Inference Protocol (KServe V2) tensors to the model's rows and back, for any transport.

A request carries one tensor per model feature, each either as typed values (`data`: JSON over
REST, typed contents over gRPC) or as one little-endian binary block (`raw`: Triton's binary
extension over REST, `raw_input_contents` over gRPC). Decoding builds the float32 matrix that
`RequestDecoder` builds from the same customers sent as `/predict` JSON - the same category
codes (a value the schema accepts but training never saw is NaN), the same float64-then-float32
rounding, NaN for a missing `total_charges` - so both protocols answer the same probabilities.
Values the JSON schema refuses are refused here too, with a message naming the tensor and row.
Binary blocks are decoded a whole column at a time with numpy; BYTES elements and their
category lookups run in numba kernels (api/v2/kernels.py).
"""

from __future__ import annotations

import functools
import math
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np
import numpy.typing as npt

from churn_mlops.api.v2 import kernels
from churn_mlops.core.errors import ServiceError
from churn_mlops.core.features import (
    CATEGORICAL_FEATURES,
    EXAMPLE_FEATURES,
    FEATURE_NAMES,
    INTEGER_FEATURES,
    MAX_CHARGE,
    CustomerFeatures,
)
from churn_mlops.model.features import FeatureEncoder, FloatMatrix

CUSTOMER_ID_INPUT = "customer_id"
MAX_CUSTOMER_ID_LENGTH = 64

# Little-endian element types of the fixed-size datatypes (BYTES is length-prefixed).
FIXED_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
ACCEPTED_DATATYPES: dict[str, tuple[str, ...]] = {
    name: ("BYTES",)
    if name in CATEGORICAL_FEATURES
    else ("INT64", "INT32", "BOOL")
    if name == "senior_citizen"
    else ("INT64", "INT32")
    if name in INTEGER_FEATURES
    else ("FP64", "FP32")
    for name in FEATURE_NAMES
}
"""The datatypes each feature's tensor may have; the first is the one metadata advertises."""

# Inclusive bounds of the numeric features, as CustomerFeatures validates them.
_BOUNDS: dict[str, tuple[float, float]] = {
    "senior_citizen": (0, 1),
    "tenure": (0, 120),
    "monthly_charges": (0, MAX_CHARGE),
    "total_charges": (0, MAX_CHARGE),
}
_NULLABLE = frozenset({"total_charges"})
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


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


@functools.lru_cache(maxsize=8)
def _category_tables(encoder: FeatureEncoder) -> dict[str, kernels.CategoryTable]:
    """Per categorical feature, every value the schema accepts with the encoder's code for it."""
    tables = {}
    for name in CATEGORICAL_FEATURES:
        values = [str(v) for v in typing.get_args(CustomerFeatures.model_fields[name].annotation)]
        columns = {f: [EXAMPLE_FEATURES[f]] * len(values) for f in FEATURE_NAMES}
        columns[name] = values
        codes = encoder.encode_columns(columns)[:, FEATURE_NAMES.index(name)]
        tables[name] = kernels.CategoryTable(values, codes.tolist())
    return tables


@functools.lru_cache(maxsize=8)
def _category_lookups(encoder: FeatureEncoder) -> dict[str, dict[str, float]]:
    """Per categorical feature, {value: code}, for requests decoded value by value."""
    return {
        name: dict(zip(table.values, table.codes.tolist(), strict=True))
        for name, table in _category_tables(encoder).items()
    }


_COLUMN = {name: index for index, name in enumerate(FEATURE_NAMES)}


def _single_json_row(
    tensors: Sequence[InputTensor], encoder: FeatureEncoder
) -> DecodedInputs | None:
    """One row sent as JSON values, the usual single prediction, decoded value by value (numpy
    costs more than it saves on one value per column); None for anything not plainly valid,
    which the general path then decodes or refuses with its exact message."""
    lookups = _category_lookups(encoder)
    row: list[float | None] = [None] * len(FEATURE_NAMES)
    customer_id = None
    for tensor in tensors:
        data = tensor.data
        if data is None or len(data) != 1 or tensor.shape not in ((1,), (1, 1)):
            return None
        value = data[0]
        name = tensor.name
        if name == CUSTOMER_ID_INPUT:
            if customer_id is not None or tensor.datatype != "BYTES" or not _valid_id(value):
                return None
            customer_id = value
            continue
        index = _COLUMN.get(name)
        if (
            index is None
            or row[index] is not None
            or tensor.datatype not in ACCEPTED_DATATYPES[name]
        ):
            return None
        lookup = lookups.get(name)
        if lookup is not None:
            code = lookup.get(value) if type(value) is str else None
            if code is None:
                return None
            row[index] = code
            continue
        number = _plain_number(name, tensor.datatype, value)
        if number is None:
            return None
        row[index] = number
    if None in row:
        return None
    return DecodedInputs([customer_id], np.array([row], dtype=np.float32))


def _plain_number(name: str, datatype: str, value: Any) -> float | None:
    """`value` as the float its column holds when it is plainly valid, else None."""
    kind = type(value)
    if (kind is bool) != (datatype == "BOOL"):
        return None
    if name in _NULLABLE and (value is None or value != value):
        return math.nan
    if kind is float:
        if name in INTEGER_FEATURES and not value.is_integer():
            return None
    elif kind is not int and kind is not bool:
        return None
    low, high = _BOUNDS[name]
    return float(value) if low <= value <= high else None


def _valid_id(customer: Any) -> bool:
    return (
        isinstance(customer, str)
        and 1 <= len(customer) <= MAX_CUSTOMER_ID_LENGTH
        and _CONTROL_CHARACTER.search(customer) is None
    )


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


def _check_names(tensors: Sequence[InputTensor]) -> None:
    names = [tensor.name for tensor in tensors]
    for name in names:
        if name not in ACCEPTED_DATATYPES and name != CUSTOMER_ID_INPUT:
            raise TensorError(f"unexpected input '{name}'")
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise TensorError(f"input '{twice}' is given more than once")
    missing = [name for name in FEATURE_NAMES if name not in names]
    if missing:
        raise TensorError(
            f"missing input '{missing[0]}'"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )


def decode_inputs(
    tensors: Sequence[InputTensor], encoder: FeatureEncoder, max_rows: int
) -> DecodedInputs:
    """The float32 rows (FEATURE_NAMES order) and customer ids of a request's input tensors;
    TensorError (400, or 413 past `max_rows`) naming the tensor, and the row for a bad value."""
    single = _single_json_row(tensors, encoder)
    if single is not None:
        return single
    _check_names(tensors)
    count = -1
    for tensor in tensors:
        rows = _rows_of(tensor, max_rows)
        if count == -1:
            count, first = rows, tensor.name
        elif rows != count:
            raise TensorError(
                f"input '{tensor.name}' has {rows} rows but input '{first}' has {count}"
            )
    matrix = np.empty((count, len(FEATURE_NAMES)), dtype=np.float32)
    customer_ids: list[str | None] = [None] * count
    tables = _category_tables(encoder)
    for tensor in tensors:
        if tensor.name == CUSTOMER_ID_INPUT:
            customer_ids = _customer_ids(tensor, count)
            continue
        accepted = ACCEPTED_DATATYPES[tensor.name]
        if tensor.datatype not in accepted:
            raise TensorError(
                f"input '{tensor.name}': datatype {tensor.datatype!r} is not "
                + " or ".join(accepted)
            )
        column = FEATURE_NAMES.index(tensor.name)
        if tensor.name in CATEGORICAL_FEATURES:
            matrix[:, column] = _categorical(tensor, count, tables[tensor.name])
        else:
            matrix[:, column] = _numeric(tensor, count)
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


def _refuse_value(
    tensor: InputTensor, row: int, value: Any, table: kernels.CategoryTable
) -> typing.NoReturn:
    known = ", ".join(repr(v) for v in table.values)
    raise TensorError(f"input '{tensor.name}' row {row}: {value!r} is not one of {known}")


def _categorical(tensor: InputTensor, count: int, table: kernels.CategoryTable) -> FloatMatrix:
    _only_one(tensor)
    if tensor.raw is not None:
        block, starts, lengths = _bytes_block(tensor, count)
        codes, bad = table.lookup(block, starts, lengths)
        if bad >= 0:
            value = bytes(block[starts[bad] : starts[bad] + lengths[bad]])
            _refuse_value(tensor, bad, value.decode("utf-8", "replace"), table)
        return codes
    data = _flat(tensor, count)
    lookup = dict(zip(table.values, table.codes.tolist(), strict=True)).get
    codes_list = []
    for row, value in enumerate(data):
        code = lookup(value) if isinstance(value, str) else None
        if code is None:
            _refuse_value(tensor, row, value, table)
        codes_list.append(code)
    return np.array(codes_list, dtype=np.float32)


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


def _numeric_values(tensor: InputTensor, count: int) -> npt.NDArray[Any]:
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
    nullable = tensor.name in _NULLABLE
    if (
        values.dtype.kind == "O"
        and nullable
        and all(v is None or type(v) in (int, float) for v in data)
    ):
        return np.array(data, dtype=np.float64)
    if tensor.datatype == "BOOL":
        if values.dtype.kind != "b":
            raise TensorError(f"input '{tensor.name}': BOOL data must be true or false")
        return values
    if values.dtype.kind not in "iuf":
        raise TensorError(f"input '{tensor.name}': {tensor.datatype} data must be numbers")
    return values


def _numeric(tensor: InputTensor, count: int) -> npt.NDArray[np.float64]:
    values = _numeric_values(tensor, count).astype(np.float64)
    low, high = _BOUNDS[tensor.name]
    nullable = tensor.name in _NULLABLE
    with np.errstate(invalid="ignore"):
        bad = ~((values >= low) & (values <= high))
        if nullable:
            bad &= ~np.isnan(values)
        if tensor.name in INTEGER_FEATURES:
            bad |= values != np.floor(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = values[row]
        integral = tensor.name in INTEGER_FEATURES
        whole = integral and math.isfinite(value) and value.is_integer()
        shown = int(value) if whole else float(value)
        kind = "an integer" if integral else "a number"
        nan_note = " or NaN" if nullable else ""
        raise TensorError(
            f"input '{tensor.name}' row {row}: {shown!r} is not {kind} from {low} to {high}"
            + nan_note
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
        if not _valid_id(customer):
            raise TensorError(
                f"input '{tensor.name}' row {row}: not a text of 1 to "
                f"{MAX_CUSTOMER_ID_LENGTH} characters without control characters"
            )
    return ids
