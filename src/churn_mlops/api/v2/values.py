"""One V2 input value against its feature: what the one-row decoders (api/v2/single_row.py)
accept as they read it, and what the general decoder (api/v2/tensors.py) accepts of a missing
category or a customer id. A value these refuse is not necessarily wrong: the one-row decoders
then hand the request to the general one, which says exactly what is wrong, or accepts it."""

from __future__ import annotations

import math
import re
from typing import Any

from churn_mlops.api.v2.inputs import InputSpec
from churn_mlops.core.schema import MAX_CATEGORY_LENGTH

CUSTOMER_ID_INPUT = "customer_id"
MAX_CUSTOMER_ID_LENGTH = 64
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def missing_category(spec: InputSpec, value: Any) -> float | None:
    """NaN for a categorical value the feature reads as missing (empty or null when nullable,
    any short text when unseen values are missing); None when it is refused."""
    if spec.nullable and (value is None or value == ""):
        return math.nan
    if spec.unknown_missing and type(value) is str and 1 <= len(value) <= MAX_CATEGORY_LENGTH:
        return math.nan
    return None


def plain_number(spec: InputSpec, datatype: str, value: Any) -> float | None:
    """`value` as the float its column holds when it is plainly valid, else None."""
    kind = type(value)
    if (kind is bool) != (datatype == "BOOL"):
        return None
    if spec.nullable and (value is None or value != value):
        return math.nan
    if kind is float:
        if math.isinf(value) or (spec.integral and not value.is_integer()):
            return None
    elif kind is not int and kind is not bool:
        return None
    return float(value) if spec.low <= value <= spec.high else None


def valid_customer_id(customer: Any) -> bool:
    return (
        isinstance(customer, str)
        and 1 <= len(customer) <= MAX_CUSTOMER_ID_LENGTH
        and _CONTROL_CHARACTER.search(customer) is None
    )
