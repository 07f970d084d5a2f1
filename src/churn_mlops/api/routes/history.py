"""`GET /predictions`: the prediction history. Thin: queries live in `churn_mlops.db`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from churn_mlops.api.deps import SessionDep
from churn_mlops.api.routes.customers import EXTERNAL_ID_PATTERN, prediction_record
from churn_mlops.api.schemas.customers import PredictionHistory
from churn_mlops.api.schemas.problem import Problem
from churn_mlops.api.scopes import AUTH_RESPONSES, ReadAccess
from churn_mlops.core.errors import FieldError, InvalidRequest, NotFound, invalid_request_detail
from churn_mlops.db.repository import CustomerNotFound, PredictionRepository

MAX_HISTORY = 1000


def _date_time_text(value: Any) -> Any:
    """Refuse a bare number: pydantic would read it as Unix time, the OpenAPI says date-time."""
    if isinstance(value, str) and value.lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("expected an ISO 8601 date-time, not a number")
    return value


def build_history_router() -> APIRouter:
    router = APIRouter(tags=["predictions"])

    @router.get(
        "/predictions",
        summary="Recorded predictions, newest first",
        response_model=PredictionHistory,
        responses={
            **AUTH_RESPONSES,
            404: {"model": Problem, "description": "No customer has this id"},
            422: {"model": Problem, "description": "A query parameter is invalid"},
            503: {"model": Problem, "description": "The database does not answer"},
        },
    )
    async def list_predictions(
        caller: ReadAccess,
        session: SessionDep,
        customer_id: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=64,
                pattern=EXTERNAL_ID_PATTERN,
                description="A stored customer's external id.",
            ),
        ] = None,
        since: Annotated[
            datetime | None,
            BeforeValidator(_date_time_text),
            Query(description="Only predictions at or after this time (ISO 8601, with zone)."),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = 100,
    ) -> PredictionHistory:
        """Predictions of one stored customer and/or since a time, newest first."""
        if since is not None:
            try:
                since = since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
            except OverflowError:
                reason = "Input is out of range once converted to UTC"
                errors = [FieldError(field="query.since", reason=reason)]
                raise InvalidRequest(invalid_request_detail(errors), errors) from None
        try:
            predictions = await PredictionRepository(session).recent(
                customer_external_id=customer_id, since=since, limit=limit
            )
        except CustomerNotFound as error:
            raise NotFound(f"No customer has the id {error.external_id!r}.") from None
        return PredictionHistory(items=[prediction_record(p) for p in predictions])

    return router
