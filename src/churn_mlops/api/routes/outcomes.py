"""`POST /customers/{customer_id}/outcome`: what became of a customer, the label live model
quality is measured against. Thin: the write lives in `churn_mlops.db.outcomes`."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import APIRouter
from starlette.responses import Response

from churn_mlops.api.deps import SessionDep
from churn_mlops.api.routes.customers import CustomerId
from churn_mlops.api.schemas.outcomes import OutcomeRecord, OutcomeReport
from churn_mlops.api.schemas.problem import Problem
from churn_mlops.api.scopes import AUTH_RESPONSES, PredictOrAdminAccess
from churn_mlops.core.errors import NotFound
from churn_mlops.db.outcomes import OutcomeStatus, record_outcome
from churn_mlops.db.repository import CustomerNotFound


def build_outcomes_router() -> APIRouter:
    router = APIRouter(tags=["customers"])

    @router.post(
        "/customers/{customer_id}/outcome",
        summary="Record whether a customer churned",
        status_code=HTTPStatus.CREATED,
        response_model=OutcomeRecord,
        responses={
            **AUTH_RESPONSES,
            200: {
                "model": OutcomeRecord,
                "description": "Already recorded: unchanged, or the new answer replaced it",
            },
            400: {"model": Problem, "description": "The body is not valid JSON"},
            404: {"model": Problem, "description": "No customer has this id"},
            413: {"model": Problem, "description": "The body is too large"},
            422: {"model": Problem, "description": "A field of the body is invalid"},
            503: {"model": Problem, "description": "The database does not answer"},
        },
    )
    async def record_customer_outcome(
        caller: PredictOrAdminAccess,
        customer_id: CustomerId,
        report: OutcomeReport,
        session: SessionDep,
        response: Response,
    ) -> OutcomeRecord:
        """Idempotent per customer and date: the same outcome again changes nothing (200); another
        answer for the same date replaces the stored one (200, `updated`): the last one wins."""
        try:
            outcome = await record_outcome(session, customer_id, report.observed_at, report.churned)
        except CustomerNotFound as error:
            raise NotFound(f"No customer has the id {error.external_id!r}.") from None
        if outcome.status != OutcomeStatus.CREATED:
            response.status_code = HTTPStatus.OK
        return OutcomeRecord(
            customer_id=outcome.customer_id,
            churned=outcome.churned,
            observed_at=outcome.observed_at,
            recorded_at=outcome.recorded_at,
            revised_at=outcome.revised_at,
            status=outcome.status.value,
        )

    return router
