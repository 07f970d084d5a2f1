"""The pydantic request models of a feature schema, built at start-up.

pydantic stays the contract: the OpenAPI document and the exact per-field errors come from these
models, and the fast msgspec decoder is derived from them. Strictness is the schema's: numbers
are strict JSON numbers (no strings), finite and within bounds; a categorical takes exactly its
values (or any short string, read as missing when unseen, if the schema says so); unknown fields
are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from churn_mlops.core.schema import MAX_CATEGORY_LENGTH, FeatureSchema, FeatureSpec

# Printable text only: every id is stored with its prediction, and PostgreSQL refuses NUL in text.
CUSTOMER_ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
CUSTOMER_ID_MAX_LENGTH = 64


def _bool_to_int(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def _integral_float_to_int(value: Any) -> Any:
    # JSON Schema's "integer" includes 41.0; strings and 41.5 are still refused.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _zero_one_or_boolean(schema: dict[str, Any]) -> None:
    """The documented schema of a 0/1 feature: what the validator accepts, booleans too."""
    schema.pop("enum", None)
    schema.pop("type", None)
    schema["anyOf"] = [{"type": "integer", "enum": [0, 1]}, {"type": "boolean"}]


def _bounds(spec: FeatureSpec) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    if spec.minimum is not None:
        bounds["ge"] = spec.minimum
    if spec.maximum is not None:
        bounds["le"] = spec.maximum
    return bounds


def _field_type(spec: FeatureSpec) -> tuple[Any, Any]:
    """(annotation, default Field) of one feature."""
    if spec.is_flag:
        flag = Annotated[Literal[0, 1], BeforeValidator(_bool_to_int)]
        return flag, Field(json_schema_extra=_zero_one_or_boolean, description=spec.description)
    annotation: Any
    if spec.kind == "categorical" and spec.unknown == "refuse":
        annotation = Literal[spec.values]
    elif spec.kind == "categorical":
        annotation = Annotated[str, Field(min_length=1, max_length=MAX_CATEGORY_LENGTH)]
    elif spec.kind == "integer":
        annotation = Annotated[
            int,
            Field(strict=True, **_bounds(spec)),
            BeforeValidator(_integral_float_to_int),
        ]
    elif spec.kind == "number":
        annotation = Annotated[float, Field(allow_inf_nan=False, strict=True, **_bounds(spec))]
    else:
        annotation = Annotated[bool, Field(strict=True)]
    if spec.nullable:
        annotation = annotation | None
    return annotation, Field(description=spec.description)


@dataclass(frozen=True)
class RequestModels:
    """The request models of one schema: a customer's features, and a request to score one."""

    features: type[BaseModel]
    request: type[BaseModel]
    example: dict[str, Any]


def request_models(schema: FeatureSchema) -> RequestModels:
    """The models of `schema`; the same schema (by hash) always gives the same classes."""
    return _models(schema.canonical_json())


@cache
def _models(canonical: bytes) -> RequestModels:
    import json

    schema = FeatureSchema.from_dict(json.loads(canonical))
    example: dict[str, Any] = dict(schema.example)
    features_fields: dict[str, Any] = {spec.name: _field_type(spec) for spec in schema.features}
    features = create_model(
        "CustomerFeatures",
        __config__=ConfigDict(
            extra="forbid", frozen=True, json_schema_extra={"examples": [example]}
        ),
        __doc__=f"The {len(schema.features)} features of one customer, named as the dataset's "
        "columns in snake_case.",
        **features_fields,
    )
    request_example: dict[str, Any] = {"customer_id": schema.example_id, "features": example}
    request = create_model(
        "PredictRequest",
        __config__=ConfigDict(
            extra="forbid", frozen=True, json_schema_extra={"examples": [request_example]}
        ),
        __doc__="One customer to score.",
        customer_id=(
            str | None,
            Field(
                default=None,
                min_length=1,
                max_length=CUSTOMER_ID_MAX_LENGTH,
                pattern=CUSTOMER_ID_PATTERN,
                description="The caller's id for this customer, echoed back and recorded with "
                "the prediction; optional; no control characters.",
            ),
        ),
        features=(features, ...),
        explain=(
            bool,
            Field(
                default=False,
                strict=True,
                description="true adds `reasons` to the answer: the features that moved this "
                "customer's churn log-odds most, with their exact TreeSHAP contributions "
                "(at most CHURN_EXPLAIN_TOP_K of them).",
            ),
        ),
    )
    return RequestModels(features=features, request=request, example=example)
