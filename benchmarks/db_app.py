"""The app the db suite loads: the service itself, plus the seed's N+1 customer listing at
`GET /bench/customers-n-plus-one` as the reference.

The reference answers exactly what `GET /customers` answers (same page, same response model,
same scope, session and pool), but fetches each customer's latest prediction with a query of
its own: 1 + N statements per page instead of one. Do not optimise it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, FastAPI, Query
from sqlalchemy import select

from churn_mlops.api.app import create_app_from_env as create_service_from_env
from churn_mlops.api.customer_fastpath import MAX_ID, MAX_PAGE
from churn_mlops.api.deps import SessionDep
from churn_mlops.api.routes.customers import prediction_record
from churn_mlops.api.schemas.customers import CustomerPage, CustomerSummary
from churn_mlops.api.scopes import ReadAccess
from churn_mlops.db.models import Customer, Prediction
from churn_mlops.db.repository import CustomerWithLatest, customer_features

N_PLUS_ONE_PATH = "/bench/customers-n-plus-one"


def customer_summary(row: CustomerWithLatest) -> CustomerSummary:
    """A listed customer through the response models, as the seed's listing builds it."""
    customer = row.customer
    return CustomerSummary(
        customer_id=customer.external_id,
        features=customer_features(customer),
        created_at=customer.created_at,
        updated_at=customer.updated_at,
        latest_prediction=None if row.latest is None else prediction_record(row.latest),
    )


def build_n_plus_one_router() -> APIRouter:
    router = APIRouter(tags=["bench"])

    @router.get(N_PLUS_ONE_PATH, response_model=CustomerPage, summary="The seed's N+1 listing")
    async def list_customers_n_plus_one(
        caller: ReadAccess,
        session: SessionDep,
        after: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    ) -> CustomerPage:
        """`GET /customers`, with one query per customer for its latest prediction."""
        statement = select(Customer).order_by(Customer.id).limit(limit)
        if after is not None:
            statement = statement.where(Customer.id > after)
        customers = list(await session.scalars(statement))
        rows = []
        for customer in customers:  # the N+1: one query per customer
            latest = await session.scalar(
                select(Prediction)
                .where(Prediction.customer_id == customer.id)
                .order_by(Prediction.created_at.desc())
                .limit(1)
            )
            rows.append(CustomerWithLatest(customer, latest))
        items = [customer_summary(row) for row in rows]
        next_after = customers[-1].id if len(customers) == limit else None
        return CustomerPage(items=items, next_after=next_after)

    return router


def with_n_plus_one(app: FastAPI) -> FastAPI:
    """`app` with the reference listing added."""
    app.include_router(build_n_plus_one_router())
    return app


def create_app_from_env() -> FastAPI:
    """uvicorn factory: the service from `CHURN_*` variables, with the reference listing."""
    return with_n_plus_one(create_service_from_env())
