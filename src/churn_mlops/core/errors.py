"""The one error base of the service: a status, a caller-safe detail, field errors and headers.

Every refusal the service makes (a malformed body, a missing credential, a model not loaded yet)
is a `ServiceError`; `api.errors` turns each into an RFC 9457 problem document in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel


class FieldError(BaseModel):
    """One reason a request was refused."""

    field: str
    reason: str


class ServiceError(Exception):
    """An error with an HTTP status and a message safe to show the caller."""

    status: int = HTTPStatus.INTERNAL_SERVER_ERROR
    # A class may set headers every instance sends (a Retry-After, say).
    headers: Mapping[str, str] | None = None

    def __init__(
        self,
        detail: str,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors) if errors is not None else None
        if headers is not None:
            self.headers = headers


class InvalidRequest(ServiceError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY


class PayloadTooLarge(ServiceError):
    """A body past the size limit, more rows than a batch takes, or JSON nested too deep."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class ModelNotReady(ServiceError):
    status = HTTPStatus.SERVICE_UNAVAILABLE


class NotFound(ServiceError):
    status = HTTPStatus.NOT_FOUND


class Conflict(ServiceError):
    status = HTTPStatus.CONFLICT


class UnsupportedMediaType(ServiceError):
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class DatabaseUnavailable(ServiceError):
    """The database is not configured or does not answer; predictions are unaffected."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


def field_path(location: Iterable[Any]) -> str:
    """`("body", 3, "features", "tenure")` as `[3].features.tenure`."""
    path = ""
    for part in location:
        if part == "body" and not path:
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[FieldError]:
    """pydantic's error list as (field, reason) pairs; never echoes the rejected values."""
    return [FieldError(field=field_path(e["loc"]), reason=e["msg"]) for e in errors]


def invalid_request_detail(errors: Sequence[FieldError]) -> str:
    fields = sorted({e.field for e in errors})
    noun = "field is" if len(fields) == 1 else "fields are"
    named = ", ".join(fields[:5]) + (f" and {len(fields) - 5} more" if len(fields) > 5 else "")
    return f"{len(fields)} {noun} invalid: {named}"
