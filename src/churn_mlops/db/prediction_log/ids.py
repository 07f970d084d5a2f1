"""The rows of the prediction log, before and after they get their UUIDv7-style ids."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import orjson

RecordedRow = tuple[
    str | None, str, float, bool, bool, float, float, str | None, float | None, bytes | None
]
"""What `record` buffers: external customer id, model version, probability, will_churn, cached,
latency in milliseconds, created_at as seconds since the epoch, the shadow challenger's
version and probability (None, None without one), and the encoded features (None unless
`CHURN_LOG_FEATURES`; `features.encode_row`)."""


class LoggedPrediction(NamedTuple):
    """A buffered row with its id: what the sink writes and the spill file holds."""

    id: str
    """A UUID as 32 lowercase hex digits (what PostgreSQL parses and the spill file holds)."""
    external_customer_id: str | None
    model_version: str
    probability: float
    will_churn: bool
    cached: bool
    latency_ms: float
    created_at: float
    """Seconds since the epoch (UTC)."""
    challenger_version: str | None = None
    challenger_probability: float | None = None
    features: bytes | None = None
    """The scored row as `features.encode_row` stores it; None when features are not logged."""


def named_customers(rows: Sequence[LoggedPrediction]) -> str | None:
    """The distinct customer ids the rows name, as one JSON array (what the sinks' lookups
    take as a single parameter); None when no row names one."""
    named = list({row.external_customer_id for row in rows} - {None})
    return orjson.dumps(named).decode() if named else None


# The variant nibble of a UUID (binary 10xx) from any hex digit.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
# Big-endian shifts of a 48-bit millisecond timestamp, one per byte.
_MILLIS_SHIFTS = np.arange(40, -1, -8, dtype=np.int64)
_RECORDED_FIELDS = len(LoggedPrediction._fields) - 1
# Below this many rows one f-string per row is cheaper than setting up the arrays.
_ARRAY_MIN_ROWS = 32


def identify(rows: Sequence[RecordedRow]) -> list[LoggedPrediction]:
    """Give rows UUIDv7-style ids: the row's own millisecond timestamp, then 74 random bits
    (time-ordered, so PostgreSQL appends to the primary key's index instead of scattering),
    made as hex text directly, the form the insert and the spill file take. Per row: 1.5 us as
    one f-string each, 0.6 us in a 500-row batch as 16-byte rows of an array (docs/
    performance.md, "Prediction log"); `uuid.UUID` objects would cost more and need converting."""
    if len(rows) < _ARRAY_MIN_ROWS:
        return _identify_each(rows)
    count = len(rows)
    created = np.fromiter((row[6] for row in rows), np.float64, count)
    millis = (created * 1000).astype(np.int64) & 0xFFFF_FFFF_FFFF
    raw = np.frombuffer(bytearray(os.urandom(16 * count)), np.uint8).reshape(count, 16)
    raw[:, :6] = (millis[:, None] >> _MILLIS_SHIFTS) & 0xFF
    raw[:, 6] = 0x70 | (raw[:, 6] & 0x0F)  # version 7
    raw[:, 8] = 0x80 | (raw[:, 8] & 0x3F)  # RFC 4122 variant
    text = raw.tobytes().hex()
    if len(rows[0]) == _RECORDED_FIELDS:
        # Whole rows (what `record` buffers) skip the NamedTuple's Python-level constructor,
        # which exists to fill in defaults: 0.58 against 0.81 us a row with the ids.
        make = tuple.__new__
        return [
            make(LoggedPrediction, (text[32 * n : 32 * n + 32], *row)) for n, row in enumerate(rows)
        ]
    return [LoggedPrediction(text[32 * n : 32 * n + 32], *row) for n, row in enumerate(rows)]


def _identify_each(rows: Sequence[RecordedRow]) -> list[LoggedPrediction]:
    randomness = os.urandom(10 * len(rows)).hex()
    identified = []
    for index, row in enumerate(rows):
        bits = randomness[20 * index : 20 * index + 20]
        millis = int(row[6] * 1000) & 0xFFFF_FFFF_FFFF
        row_id = f"{millis:012x}7{bits[:3]}{_VARIANT[bits[3]]}{bits[4:7]}{bits[7:19]}"
        identified.append(LoggedPrediction(row_id, *row))
    return identified
