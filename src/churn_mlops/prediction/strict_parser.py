"""Decodes and validates prediction bodies straight from bytes, once.

pydantic's Rust JSON parser validates while it parses, which is several times faster than
`json.loads` followed by validation, and a too-long batch is refused as soon as the row past
the limit is seen.
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
from churn_mlops.core.features import PredictRequest
from churn_mlops.security.limits import json_depth_exceeds, too_deep

REQUEST_SCHEMA_REF = "#/components/schemas/PredictRequest"


class StrictBodyParser:
    """Parsers for `/predict` and `/predict/batch` bodies, built once per app."""

    def __init__(self, max_batch_rows: int, max_json_depth: int = 32) -> None:
        self.max_batch_rows = max_batch_rows
        self.max_json_depth = max_json_depth
        self._single = TypeAdapter(PredictRequest)
        self._batch = TypeAdapter(
            Annotated[list[PredictRequest], Field(min_length=1, max_length=max_batch_rows)]
        )

    # These parse what the fast decoder refused (which a body of valid shape, at most three
    # levels deep, never is), so the depth check costs nothing on the usual path.
    def single(self, body: bytes) -> PredictRequest:
        if json_depth_exceeds(body, self.max_json_depth):
            raise too_deep(self.max_json_depth)
        try:
            return self._single.validate_json(body)
        except ValidationError as error:
            raise _invalid(error) from None

    def batch(self, body: bytes) -> list[PredictRequest]:
        if json_depth_exceeds(body, self.max_json_depth):
            raise too_deep(self.max_json_depth)
        try:
            return self._batch.validate_json(body)
        except ValidationError as error:
            if any(e["type"] == "too_long" and not e["loc"] for e in error.errors()):
                raise PayloadTooLarge(
                    f"A batch holds at most {self.max_batch_rows} rows; split it into "
                    "several requests."
                ) from None
            raise _invalid(error) from None

    def openapi_single(self) -> dict[str, Any]:
        return _request_body({"$ref": REQUEST_SCHEMA_REF})

    def openapi_batch(self) -> dict[str, Any]:
        return _request_body(
            {
                "type": "array",
                "items": {"$ref": REQUEST_SCHEMA_REF},
                "minItems": 1,
                "maxItems": self.max_batch_rows,
            }
        )


def _invalid(error: ValidationError) -> InvalidRequest:
    errors = field_errors(error.errors(include_input=False, include_url=False))
    return InvalidRequest(invalid_request_detail(errors), errors)


def _request_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
