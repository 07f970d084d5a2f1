"""Prediction bodies from raw bytes to float32 rows, fast.

pydantic defines the contract (the OpenAPI schema and the exact error list), but validating
10,000 rows through pydantic models costs over 100 ms. So the happy path decodes with msgspec
into structs *derived from the pydantic models* (same fields, enums, bounds; msgspec is as
strict or stricter), and encodes columns in one pass each. Whatever msgspec refuses goes to
pydantic, which either raises the exact errors or, for input only pydantic's laxer rules accept
(`senior_citizen: true`), validates it on the slower path.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable
from operator import attrgetter
from typing import Annotated, Any

import annotated_types
import msgspec
import numpy as np
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic.functional_validators import BeforeValidator

from churn_mlops.core.features import (
    CATEGORICAL_FEATURES,
    EXAMPLE_FEATURES,
    FEATURE_NAMES,
    CustomerFeatures,
    PredictRequest,
)
from churn_mlops.model.features import FeatureEncoder, FloatMatrix
from churn_mlops.prediction.strict_parser import StrictBodyParser

_NUMERIC_BOUNDS = {
    annotated_types.Ge: "ge",
    annotated_types.Le: "le",
    annotated_types.MinLen: "min_length",
    annotated_types.MaxLen: "max_length",
}
# Constraints msgspec enforces anyway on JSON (strict types, no NaN/Infinity tokens), and
# validators that only make pydantic laxer.
_IMPLIED = (annotated_types.Interval, BeforeValidator)


def _msgspec_type(annotation: Any, metadata: list[Any]) -> Any:
    """The msgspec equivalent of a pydantic field type; refuses anything it does not know."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        inner, *extra = typing.get_args(annotation)
        nested = [m for e in extra for m in (e.metadata if isinstance(e, FieldInfo) else [e])]
        return _msgspec_type(inner, [*metadata, *nested])
    if origin in (typing.Union, types.UnionType):
        members = tuple(
            member if member is type(None) else _msgspec_type(member, metadata)
            for member in typing.get_args(annotation)
        )
        return typing.Union[members]  # noqa: UP007 - built from a tuple at run time
    bounds: dict[str, Any] = {}
    for item in metadata:
        name = type(item).__name__
        if type(item) in _NUMERIC_BOUNDS:
            key = _NUMERIC_BOUNDS[type(item)]
            bounds[key] = getattr(item, key)
        elif name == "_PydanticGeneralMetadata" and set(vars(item)) == {"pattern"}:
            # pydantic's regexes (Rust) end at `$`; Python's `$` also matches before a final
            # newline, which `\Z` does not.
            pattern = item.pattern
            bounds["pattern"] = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
        elif name in ("Strict", "AllowInfNan") or isinstance(item, _IMPLIED):
            continue
        else:
            raise TypeError(f"no msgspec equivalent for constraint {item!r}")
    if origin is typing.Literal or annotation in (bool, int, float, str):
        return Annotated[annotation, msgspec.Meta(**bounds)] if bounds else annotation
    raise TypeError(f"no msgspec equivalent for {annotation!r}")


def _struct(model: type[BaseModel], nested: dict[str, Any]) -> type[msgspec.Struct]:
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for name, info in model.model_fields.items():
        kind = nested.get(name) or _msgspec_type(info.annotation, list(info.metadata))
        fields.append((name, kind) if info.is_required() else (name, kind, info.default))
    return msgspec.defstruct(model.__name__, fields, forbid_unknown_fields=True, kw_only=True)


FeaturesStruct = _struct(CustomerFeatures, {})
RequestStruct = _struct(PredictRequest, {"features": FeaturesStruct})

# What msgspec raises for a body it refuses: malformed or invalid JSON (ValidationError is a
# DecodeError), and a string that is not UTF-8, which it reports as Python's decode would.
_REFUSED = (msgspec.DecodeError, UnicodeDecodeError)

_features_of = attrgetter("features")
_explain_of = attrgetter("explain")
_values_of = attrgetter(*FEATURE_NAMES)


Explained = tuple[Any, ...] | None
"""A row's feature values as sent (FEATURE_NAMES order) when it asked for reasons, else None."""


def _to_float(value: float | None) -> float:
    return math.nan if value is None else value


class RequestDecoder:
    """Decodes `/predict` and `/predict/batch` bodies into (customer ids, encoded rows)."""

    def __init__(self, encoder: FeatureEncoder, bodies: StrictBodyParser) -> None:
        self.encoder = encoder
        self.bodies = bodies
        # Typed as Any: the struct classes are built at import time, mypy cannot see fields.
        self._single: msgspec.json.Decoder[Any] = msgspec.json.Decoder(RequestStruct)
        self._batch: msgspec.json.Decoder[list[Any]] = msgspec.json.Decoder(list[RequestStruct])  # type: ignore[valid-type]
        # Every schema value of a categorical feature mapped to the encoder's code (NaN for a
        # value the model never saw in training, as FeatureEncoder does).
        self._codes: dict[str, dict[Any, float]] = {}
        for name in CATEGORICAL_FEATURES:
            values = typing.get_args(CustomerFeatures.model_fields[name].annotation)
            row = encoder.encode_columns(
                {
                    f: list(values) if f == name else [EXAMPLE_FEATURES[f]] * len(values)
                    for f in FEATURE_NAMES
                }
            )
            self._codes[name] = dict(
                zip(values, row[:, FEATURE_NAMES.index(name)].tolist(), strict=True)
            )
        self._converters: list[Callable[[Any], float]] = [
            self._codes[name].__getitem__ if name in self._codes else _to_float
            for name in FEATURE_NAMES
        ]

    def single(self, raw: bytes) -> tuple[str | None, FloatMatrix]:
        customer_id, row, _ = self.single_explained(raw)
        return customer_id, row

    def single_explained(self, raw: bytes) -> tuple[str | None, FloatMatrix, Explained]:
        """(customer id, encoded row, the feature values as sent when `explain` is true)."""
        try:
            request = self._single.decode(raw)
        except _REFUSED:
            model = self.bodies.single(raw)  # raises the exact errors, or accepts lax input
            features = model.features.__dict__
            explained = tuple(features[n] for n in FEATURE_NAMES) if model.explain else None
            return model.customer_id, self.encoder.encode_row(features), explained
        values = _values_of(request.features)
        row = [convert(value) for convert, value in zip(self._converters, values, strict=True)]
        explained = values if request.explain else None
        return request.customer_id, np.array([row], dtype=np.float32), explained

    def batch(self, raw: bytes) -> tuple[list[str | None], FloatMatrix]:
        customer_ids, matrix, _ = self.batch_explained(raw)
        return customer_ids, matrix

    def batch_explained(
        self, raw: bytes
    ) -> tuple[list[str | None], FloatMatrix, list[Explained] | None]:
        """(customer ids, encoded rows, per row its values as sent when its `explain` is true
        or None; None when no row asks)."""
        try:
            requests = self._batch.decode(raw)
            if not 1 <= len(requests) <= self.bodies.max_batch_rows:
                raise msgspec.ValidationError("batch size")
        except _REFUSED:
            models = self.bodies.batch(raw)
            columns = {n: [m.features.__dict__[n] for m in models] for n in FEATURE_NAMES}
            explained = None
            if any(m.explain for m in models):
                explained = [
                    tuple(m.features.__dict__[n] for n in FEATURE_NAMES) if m.explain else None
                    for m in models
                ]
            ids = [m.customer_id for m in models]
            return ids, self.encoder.encode_columns(columns), explained
        rows = list(map(_values_of, map(_features_of, requests)))
        matrix = np.empty((len(rows), len(FEATURE_NAMES)), dtype=np.float32)
        for index, (name, column) in enumerate(
            zip(FEATURE_NAMES, zip(*rows, strict=True), strict=True)
        ):
            codes = self._codes.get(name)
            if codes is not None:
                matrix[:, index] = np.fromiter(
                    map(codes.__getitem__, column), np.float32, len(column)
                )
            else:
                # None becomes NaN in a float64 conversion; then one rounding to float32.
                matrix[:, index] = np.array(column, dtype=np.float64)
        ids = [request.customer_id for request in requests]
        if not any(map(_explain_of, requests)):
            return ids, matrix, None
        explained = [row if r.explain else None for row, r in zip(rows, requests, strict=True)]
        return ids, matrix, explained
