"""Validates the prediction bodies the fast decoder refused, for pydantic's exact errors.

The models are the served model's: `request_models(schema)` of its feature schema, built once
per model. pydantic's Rust JSON parser is several times faster than `json.loads` followed by
validation, but it reads the whole body into values before validating them: the body's shape is
checked before it does (see `StrictBodyParser`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from churn_mlops.core.errors import (
    InvalidRequest,
    PayloadTooLarge,
    field_errors,
    invalid_request_detail,
)
from churn_mlops.core.request_models import RequestModels, request_models
from churn_mlops.core.schema import FeatureSchema
from churn_mlops.security.limits import json_shape, too_deep, utf8_refusal

REQUEST_SCHEMA_REF = "#/components/schemas/PredictRequest"

# Room for a few mistakes in an otherwise valid body (an extra field or two), which then get
# pydantic's 422 naming the field rather than a 413 for the shape.
_SLACK = 64
MEMBER_SLACK = _SLACK // 2
"""Members an object may have beyond the request's features before the body is a 413."""
# No field takes a string longer than 64 characters; 4 KiB holds that many, each escaped.
MAX_STRING_BYTES = 4096


def shipped_example_schema() -> FeatureSchema:
    """The shipped Telco example's schema: the one of artifacts made before schema.json
    existed, and of a parser or decoder built without a schema (tests, benchmarks)."""
    from churn_mlops.data import telco_schema

    return telco_schema()


class StrictBodyParser:
    """Parsers for `/predict` and `/predict/batch` bodies, built once per app.

    pydantic parses a whole body into values before it validates, and lists every error: before
    it sees a body, the body's shape (one compiled pass, `security/limits.py`) must fit what a
    valid request could be (nesting, values, members of an object, string lengths), else 413.
    A batch is refused at its first invalid row (`fail_fast`), so a refusal names at most one
    row's fields, however many rows are wrong: the cost of an answer stays that of the body.
    """

    def __init__(
        self, max_batch_rows: int, max_json_depth: int = 32, schema: FeatureSchema | None = None
    ) -> None:
        self.max_batch_rows = max_batch_rows
        self.max_json_depth = max_json_depth
        self.schema = shipped_example_schema() if schema is None else schema
        """The feature schema whose request models this parser validates with."""
        self.models: RequestModels = request_models(self.schema)
        request = self.models.request
        self.features = len(self.models.features.model_fields)
        self.widest = max(self.features, len(request.model_fields))
        # A valid row is two objects (four braces) with a colon per field and commas between
        # fields and rows: at most this many structural bytes.
        self.row_structural = 4 + 2 * (len(request.model_fields) + self.features)
        self.max_members = self.widest + MEMBER_SLACK
        self._single: TypeAdapter[Any] = TypeAdapter(request)
        rows: Any = Annotated[
            list[request],  # type: ignore[valid-type]
            Field(min_length=1, max_length=max_batch_rows, fail_fast=True),
        ]
        self._batch: TypeAdapter[list[Any]] = TypeAdapter(rows)
        # Compiles the shape scan now, at start-up, rather than at the first refused body.
        json_shape(b"[]", max_json_depth)

    # These parse what the fast decoder refused (which a body of valid shape, at most three
    # levels deep, never is), so the shape check costs nothing on the usual path.
    def single(self, body: bytes) -> Any:
        """The request model of the body (its `features` are the schema's model)."""
        self._check_body(body, rows=1)
        try:
            return self._single.validate_json(body)
        except ValidationError as error:
            raise _invalid(error) from None

    def batch(self, body: bytes) -> list[Any]:
        self._check_body(body, rows=self.max_batch_rows)
        try:
            return self._batch.validate_json(body)
        except ValidationError as error:
            if any(e["type"] == "too_long" and not e["loc"] for e in error.errors()):
                raise PayloadTooLarge(
                    f"A batch holds at most {self.max_batch_rows} rows; split it into "
                    "several requests."
                ) from None
            raise _invalid(error) from None

    def _check_body(self, body: bytes, rows: int) -> None:
        """413 for a body no valid request of `rows` rows could be; 422 for one that is not
        UTF-8. Linear in the body: one compiled pass, one decode."""
        shape = json_shape(body, self.max_json_depth)
        if shape.depth > self.max_json_depth:
            raise too_deep(self.max_json_depth)
        if shape.widest > self.max_members:
            raise PayloadTooLarge(
                f"An object of the JSON body has {shape.widest} members; a request's objects "
                f"have at most {self.widest}."
            )
        if shape.structural > rows * self.row_structural + _SLACK:
            if rows == 1:
                raise PayloadTooLarge("The JSON body holds more values than one request can.")
            raise PayloadTooLarge(
                f"A batch holds at most {rows} rows, and this body holds more values than that "
                "many can; split it into several requests."
            )
        if shape.longest_string > MAX_STRING_BYTES:
            raise PayloadTooLarge(
                f"The JSON body holds a string of {shape.longest_string} bytes; no field of a "
                "request takes one that long."
            )
        refusal = utf8_refusal(body)
        if refusal is not None:
            raise refusal

    def openapi_single(self) -> dict[str, Any]:
        return openapi_single()

    def openapi_batch(self) -> dict[str, Any]:
        return openapi_batch(self.max_batch_rows)


def openapi_single() -> dict[str, Any]:
    """The OpenAPI `requestBody` of `/predict`: the served schema's `PredictRequest`."""
    return _request_body({"$ref": REQUEST_SCHEMA_REF})


def openapi_batch(max_batch_rows: int) -> dict[str, Any]:
    """The OpenAPI `requestBody` of `/predict/batch`: 1 to `max_batch_rows` requests."""
    return _request_body(
        {
            "type": "array",
            "items": {"$ref": REQUEST_SCHEMA_REF},
            "minItems": 1,
            "maxItems": max_batch_rows,
        }
    )


def _invalid(error: ValidationError) -> InvalidRequest:
    errors = field_errors(error.errors(include_input=False, include_url=False))
    return InvalidRequest(invalid_request_detail(errors), errors)


def _request_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
