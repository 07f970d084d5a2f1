"""The one place that turns every error into an RFC 9457 problem document."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Match

from churn_mlops.api.schemas.problem import Problem
from churn_mlops.core.errors import (
    FieldError,
    ServiceError,
    field_errors,
    invalid_request_detail,
)
from churn_mlops.security.limits import utf8_refusal

PROBLEM_MEDIA_TYPE = "application/problem+json"
logger = logging.getLogger("churn_mlops.errors")


# RFC 9110's names; Python's HTTPStatus phrases differ between versions for these two.
_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}


def problem_body(status: int, detail: str, errors: Sequence[FieldError] | None = None) -> bytes:
    """The JSON bytes of a problem document."""
    problem = Problem(
        title=_TITLES.get(status) or HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        errors=errors,
    )
    return orjson.dumps(problem.model_dump(exclude_none=True))


def problem_bytes(error: ServiceError) -> bytes:
    return problem_body(error.status, error.detail, error.errors)


def problem_response(
    status: int,
    detail: str,
    errors: Sequence[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        problem_body(status, detail, errors),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


async def _service_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ServiceError)  # noqa: S101 - registered for these
    return problem_response(error.status, error.detail, error.errors, error.headers)


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)  # noqa: S101
    errors = [_json_invalid(e) if e["type"] == "json_invalid" else e for e in error.errors()]
    fields = field_errors(errors)
    return problem_response(422, invalid_request_detail(fields), fields)


def _json_invalid(error: Mapping[str, Any]) -> dict[str, Any]:
    """FastAPI's JSON decode error locates the body's character in `loc`, which would read as
    an array index: name the body, with the position in the reason."""
    position = error["loc"][-1]
    reason = f"Invalid JSON: {error.get('ctx', {}).get('error', 'decode error')}"
    return {"loc": ("body",), "msg": f"{reason} at character {position}"}


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)  # noqa: S101
    cause = error.__cause__
    # FastAPI turns a failure to decode a route's body into a bare 400, but for a JSON syntax
    # error (a 422). Answered as the prediction routes answer the same bodies: one of ours (a
    # body past the size limit while it was read) as itself, a body that is not UTF-8 as a 422
    # naming the string at fault, one nested too deep for Python's parser as a 413.
    if isinstance(cause, ServiceError):
        return await _service_error(request, cause)
    if isinstance(cause, UnicodeDecodeError):
        refusal = utf8_refusal(await request.body())
        errors = refusal.errors if refusal is not None else None
        if not errors:
            errors = [FieldError(field="body", reason="Not JSON text, which is UTF-8")]
        return problem_response(422, invalid_request_detail(errors), errors)
    if isinstance(cause, RecursionError):
        return problem_response(413, "The JSON body nests arrays and objects too deep.")
    detail = error.detail if isinstance(error.detail, str) else HTTPStatus(error.status_code).phrase
    headers = error.headers
    if error.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        # Starlette names the methods of the first route matching the path only; a path served
        # by several routes (GET and POST /auth/keys) allows all of theirs.
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    return problem_response(error.status_code, detail, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        matches = getattr(route, "matches", None)
        if matches is not None and matches(request.scope)[0] != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _client_disconnect(request: Request, error: Exception) -> Response:
    # The client left while its body was arriving (a load generator stopping, a timeout): no
    # fault of ours, and the answer reaches nobody.
    logger.debug("client disconnected during %s %s", request.method, request.url.path)
    return problem_response(400, "The client closed the connection before the body ended.")


def log_unexpected_error(where: str, error: BaseException) -> None:
    """Log a request's unexpected failure without a stack trace or the exception's message,
    either of which may carry request values: its type and where it was raised. The full
    traceback goes to DEBUG, for a developer who turns that on."""
    frames = traceback.extract_tb(error.__traceback__)
    origin = "an unknown place"
    if frames:
        origin = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}"
    logger.error("unhandled %s on %s (raised at %s)", type(error).__name__, where, origin)
    logger.debug("traceback of the unhandled error on %s", where, exc_info=error)


async def _unexpected_error(request: Request, error: Exception) -> Response:
    log_unexpected_error(f"{request.method} {request.url.path}", error)
    return problem_response(500, "The server failed to answer this request.")


def document_problem_responses(document: dict[str, Any]) -> None:
    """Declare every 4xx and 5xx response of an OpenAPI document as what the app sends:
    `application/problem+json` with the Problem schema (FastAPI's defaults say JSON, and its
    validation-error model); and the 413 and 415 of every operation that takes a body."""
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.update(problem.pop("$defs", {}))
    components["Problem"] = problem
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if "requestBody" in operation:
                # Every body is limited in size and JSON (`security/limits.RequestBodyLimits`).
                responses = operation.setdefault("responses", {})
                responses.setdefault("413", {"description": "The body is too large"})
                responses.setdefault(
                    "415", {"description": "The body is not declared JSON (Content-Type)"}
                )
            for status, response in operation.get("responses", {}).items():
                if status[0] in "45":
                    response["content"] = {
                        PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
                    }


def install_error_handlers(app: FastAPI) -> None:
    """Route every error the app can raise to one problem+json format."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(Exception, _unexpected_error)
