"""Prediction bodies from raw bytes to float32 rows, fast.

pydantic defines the contract (the OpenAPI schema and the exact error list), but validating
10,000 rows through pydantic models costs over 100 ms. So the happy path decodes with msgspec
into structs *derived from the pydantic models* (same fields, enums, bounds; msgspec is as
strict or stricter), and encodes columns in one pass each. Whatever msgspec refuses goes to
pydantic, which either raises the exact errors or, for input only pydantic's laxer rules accept
(a 0/1 flag sent as `true`, an integer sent as `41.0`), validates it on the slower path.

The models are the served model's, `request_models(schema)` of its feature schema: the structs,
the per-value codes and the column order are derived from them once per model, when its
pipeline is built, never per request.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from operator import attrgetter
from operator import call as _call
from typing import Annotated, Any

import annotated_types
import msgspec
import numpy as np
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic.functional_validators import BeforeValidator

from churn_mlops.core.request_models import RequestModels
from churn_mlops.core.schema import FeatureSchema
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


@dataclass(frozen=True)
class RequestStructs:
    """The msgspec structs of one schema's request models."""

    features: type[msgspec.Struct]
    request: type[msgspec.Struct]


def request_structs(models: RequestModels) -> RequestStructs:
    """The structs of `models`; the same models (one schema) always give the same structs."""
    return _structs(models.features, models.request)


@cache
def _structs(features_model: type[BaseModel], request_model: type[BaseModel]) -> RequestStructs:
    features = _struct(features_model, {})
    return RequestStructs(features, _struct(request_model, {"features": features}))


# What msgspec raises for a body it refuses: malformed or invalid JSON (ValidationError is a
# DecodeError), and a string that is not UTF-8, which it reports as Python's decode would.
_REFUSED = (msgspec.DecodeError, UnicodeDecodeError)

_features_of = attrgetter("features")
_explain_of = attrgetter("explain")


Explained = tuple[Any, ...] | None
"""A row's feature values as sent (the schema's order) when it asked for reasons, else None."""


def _to_float(value: float | None) -> float:
    return math.nan if value is None else value


class _UnseenIsMissing(dict[Any, float]):
    """The codes of a categorical whose unseen values are read as missing (`unknown:
    missing`): a value not listed is NaN. A plain dict lookup for every listed value."""

    def __missing__(self, key: Any) -> float:
        return math.nan


def _values_getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """A struct's feature values in `names` order, as a tuple (attrgetter of one name gives
    the value itself)."""
    if len(names) == 1:
        only = attrgetter(names[0])
        return lambda features: (only(features),)
    return attrgetter(*names)


def _literal_values(annotation: Any) -> tuple[Any, ...]:
    """The values of the Literal in a field's annotation (inside Annotated or Optional)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return typing.get_args(annotation)
    if origin is Annotated:
        return _literal_values(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for member in typing.get_args(annotation):
            if values := _literal_values(member):
                return values
    return ()


def _category_codes(
    schema: FeatureSchema, encoder: FeatureEncoder, features: type[BaseModel]
) -> dict[str, dict[Any, float]]:
    """Every schema value of each categorical feature mapped to the encoder's code (NaN for a
    value the model never saw in training, as FeatureEncoder does; NaN for null when the
    feature is nullable)."""
    codes: dict[str, dict[Any, float]] = {}
    names = schema.names
    for spec in schema.features:
        if spec.kind != "categorical":
            continue
        # The Literal's own strings when there is one: msgspec decodes a Literal field to those
        # very objects, so each lookup matches by identity, without comparing characters
        # (about 0.1 us of a Telco row's 15 lookups).
        literal = _literal_values(features.model_fields[spec.name].annotation)
        values = list(literal) if set(literal) == set(spec.values) else list(spec.values)
        # The other columns are missing: the encoder reads them as NaN, and only this one's
        # codes are kept.
        rows = encoder.encode_columns(
            {f: values if f == spec.name else [None] * len(values) for f in names}
        )
        column = rows[:, names.index(spec.name)].tolist()
        lookup: dict[Any, float] = _UnseenIsMissing() if spec.unknown == "missing" else {}
        lookup.update(zip(values, column, strict=True))
        if spec.nullable:
            lookup[None] = math.nan
        codes[spec.name] = lookup
    return codes


class RequestDecoder:
    """Decodes `/predict` and `/predict/batch` bodies into (customer ids, encoded rows)."""

    def __init__(self, encoder: FeatureEncoder, bodies: StrictBodyParser) -> None:
        self.encoder = encoder
        self.bodies = bodies
        self.schema = bodies.schema
        """The feature schema the bodies are read by (the parser's, the model's)."""
        self.names: tuple[str, ...] = self.schema.names
        if encoder.feature_names != self.names:
            raise ValueError(
                f"the encoder's features {list(encoder.feature_names)} are not the schema's "
                f"{list(self.names)}"
            )
        structs = request_structs(bodies.models)
        # Typed as Any: the struct classes are built at run time, mypy cannot see fields.
        self._single: msgspec.json.Decoder[Any] = msgspec.json.Decoder(structs.request)
        self._batch: msgspec.json.Decoder[list[Any]] = msgspec.json.Decoder(
            list[structs.request]  # type: ignore[name-defined]
        )
        self._values_of = _values_getter(self.names)
        self._codes = _category_codes(self.schema, encoder, bodies.models.features)
        self._converters: list[Callable[[Any], float]] = [
            self._codes[name].__getitem__ if name in self._codes else _to_float
            for name in self.names
        ]
        self._width = len(self.names)

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
            explained = tuple(features[n] for n in self.names) if model.explain else None
            return model.customer_id, self.encoder.encode_row(features), explained
        values = self._values_of(request.features)
        # One pass from the values into the row, no list between: 0.8 us of 4.5 less than a
        # list comprehension and np.array (docs/performance.md, "Decoding one row").
        row = np.fromiter(map(_call, self._converters, values), np.float32, self._width)
        explained = values if request.explain else None
        return request.customer_id, row.reshape(1, self._width), explained

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
            names = self.names
            columns = {n: [m.features.__dict__[n] for m in models] for n in names}
            explained = None
            if any(m.explain for m in models):
                explained = [
                    tuple(m.features.__dict__[n] for n in names) if m.explain else None
                    for m in models
                ]
            ids = [m.customer_id for m in models]
            return ids, self.encoder.encode_columns(columns), explained
        rows = list(map(self._values_of, map(_features_of, requests)))
        matrix = np.empty((len(rows), len(self.names)), dtype=np.float32)
        for index, (name, column) in enumerate(
            zip(self.names, zip(*rows, strict=True), strict=True)
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
