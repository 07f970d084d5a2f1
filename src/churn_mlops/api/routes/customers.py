"""`/customers`: stored customers, their prediction history, and predictions from stored
features. Thin: the queries live in `churn_mlops.db.repository`; the two reads are
`churn_mlops.api.customer_fastpath`'s, which also answers them before FastAPI.

`POST /customers` validates the features against the served model's schema (its request
models: the same per-field problems as `POST /predict`) and stores them with the schema's hash.
Stored features are scored with the served schema's defaults for features they lack
(`churn_mlops.db.stored_features.with_defaults`)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from churn_mlops.api.customer_fastpath import (
    DEFAULT_PAGE,
    DEFAULT_RECENT,
    MAX_ID,
    MAX_PAGE,
    MAX_RECENT,
    detail_bytes,
    not_found,
    page_bytes,
)
from churn_mlops.api.deps import NOT_READY, RuntimeDep, ServedModelDep, SessionDep
from churn_mlops.api.schemas.customers import (
    EXAMPLE_CUSTOMER_ID,
    CustomerDetail,
    CustomerPage,
    CustomerWritten,
    PredictionRecord,
    customer_write_model,
)
from churn_mlops.api.schemas.predictions import PredictResponse
from churn_mlops.api.schemas.problem import Problem
from churn_mlops.api.scopes import (
    AUTH_RESPONSES,
    PredictAccess,
    PredictOrAdminAccess,
    ReadAccess,
)
from churn_mlops.core.errors import (
    InvalidRequest,
    ModelNotReady,
    field_errors,
    invalid_request_detail,
)
from churn_mlops.db.models import Prediction
from churn_mlops.db.repository import CustomerNotFound, CustomerRepository, customer_features
from churn_mlops.db.stored_features import with_defaults
from churn_mlops.runtime import Runtime

# Ids are text of any script, but no control characters (PostgreSQL refuses NUL in text).
EXTERNAL_ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"

CustomerId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=EXTERNAL_ID_PATTERN,
        description="The customer's external id, as in the dataset.",
        examples=[EXAMPLE_CUSTOMER_ID],
    ),
]

Responses = dict[int | str, dict[str, Any]]
_UNKNOWN: Responses = {404: {"model": Problem, "description": "No customer has this id"}}
_UNAVAILABLE: Responses = {503: {"model": Problem, "description": "The database does not answer"}}
_INVALID: Responses = {422: {"model": Problem, "description": "A query parameter is out of range"}}


def prediction_record(prediction: Prediction) -> PredictionRecord:
    return PredictionRecord(
        id=prediction.id,
        customer_id=prediction.external_customer_id,
        model_version=prediction.model_version,
        churn_probability=prediction.probability,
        will_churn=prediction.will_churn,
        cached=prediction.cached,
        latency_ms=prediction.latency_ms,
        created_at=prediction.created_at,
    )


def _with_reasons(detail: bytes, runtime: Runtime) -> bytes:
    """A CustomerDetail document with the served model's reasons for its stored features."""
    served = runtime.model.current
    if served is None:
        raise ModelNotReady(NOT_READY)
    document = orjson.loads(detail)
    features = with_defaults(document["features"], served.artifact.schema)
    document["reasons"] = served.pipeline.explain_features(document["customer_id"], features)
    return orjson.dumps(document)


# The body's schema is the served model's `CustomerFeatures` component (the app documents it
# from the served model's request), inside the customer's id.
_WRITE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "title": "CustomerWrite",
                    "type": "object",
                    "description": "A customer to store: its external id and its features.",
                    "properties": {
                        "customer_id": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 64,
                            "pattern": EXTERNAL_ID_PATTERN,
                            "description": "The customer's external id; no control characters.",
                        },
                        "features": {"$ref": "#/components/schemas/CustomerFeatures"},
                    },
                    "required": ["customer_id", "features"],
                    "additionalProperties": False,
                }
            }
        },
    }
}


def written_json(external_id: str, features: dict[str, Any], times: Any, created: bool) -> bytes:
    created_at, updated_at = times
    document = {
        "customer_id": external_id,
        "features": features,
        "created_at": created_at,
        "updated_at": updated_at,
        "created": created,
    }
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)


def build_customers_router() -> APIRouter:
    router = APIRouter(tags=["customers"])
    _add_write_routes(router)
    _add_read_routes(router)
    _add_scoring_route(router)
    return router


def _add_write_routes(router: APIRouter) -> None:
    @router.post(
        "/customers",
        summary="Store a customer's features",
        status_code=HTTPStatus.CREATED,
        response_model=CustomerWritten,
        responses={
            **AUTH_RESPONSES,
            200: {"model": CustomerWritten, "description": "The customer existed: replaced"},
            422: {
                "model": Problem,
                "description": "A field is missing, of the wrong type or "
                "out of range for the served model's schema",
            },
            503: {"model": Problem, "description": "Database unreachable, or model not ready"},
        },
        openapi_extra=_WRITE_BODY,
    )
    async def store_customer(
        caller: PredictOrAdminAccess,
        request: Request,
        session: SessionDep,
        served: ServedModelDep,
    ) -> Response:
        """Validates the features against the served model's feature schema and stores them
        with that schema's hash: a new customer (201), or the existing one's features replaced
        (200)."""
        schema = served.artifact.schema
        try:
            body: Any = customer_write_model(schema).model_validate_json(await request.body())
        except ValidationError as error:
            errors = field_errors(error.errors(include_input=False, include_url=False))
            raise InvalidRequest(invalid_request_detail(errors), errors) from None
        features = body.features.model_dump()
        customer, created = await CustomerRepository(session).replace(
            body.customer_id, features, schema.sha256
        )
        times = (customer.created_at, customer.updated_at)
        await session.commit()
        status = HTTPStatus.CREATED if created else HTTPStatus.OK
        answer = written_json(body.customer_id, features, times, created)
        return Response(answer, status_code=status, media_type="application/json")


def _add_read_routes(router: APIRouter) -> None:
    @router.get(
        "/customers",
        summary="List customers with their latest prediction",
        response_model=CustomerPage,
        responses={**AUTH_RESPONSES, **_INVALID, **_UNAVAILABLE},
    )
    async def list_customers(
        caller: ReadAccess,
        runtime: RuntimeDep,
        after: Annotated[
            int | None,
            Query(ge=0, le=MAX_ID, description="`next_after` of the previous page."),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    ) -> Response:
        """Customers in id order, each with its latest prediction; keyset pagination, so every
        page costs one index seek however deep it is (an offset would scan the skipped rows)."""
        page = await page_bytes(runtime, after, limit)
        return Response(page, media_type="application/json")

    @router.get(
        "/customers/{customer_id}",
        summary="One customer with its recent predictions",
        response_model=CustomerDetail,
        responses={
            **AUTH_RESPONSES,
            **_UNKNOWN,
            **_INVALID,
            **_UNAVAILABLE,
            409: {"model": Problem, "description": "explain=true, and the model cannot explain"},
        },
    )
    async def get_customer(
        caller: ReadAccess,
        customer_id: CustomerId,
        runtime: RuntimeDep,
        limit: Annotated[
            int, Query(ge=1, le=MAX_RECENT, description="How many recent predictions.")
        ] = DEFAULT_RECENT,
        explain: Annotated[
            bool,
            Query(
                description="Add `reasons` (as `POST /predict` answers them with `explain: "
                "true`) for the customer's stored features: recomputed by the served model, "
                "never stored. 409 if that model has no explanation data."
            ),
        ] = False,
    ) -> Response:
        """The customer's features and its most recent predictions, newest first."""
        detail = await detail_bytes(runtime, customer_id, limit)
        if explain:
            detail = _with_reasons(detail, runtime)
        return Response(detail, media_type="application/json")


def _add_scoring_route(router: APIRouter) -> None:
    @router.post(
        "/customers/{customer_id}/predict",
        summary="Predict a stored customer's churn",
        response_model=PredictResponse,
        responses={
            **AUTH_RESPONSES,
            **_UNKNOWN,
            503: {"model": Problem, "description": "Database unreachable, or model not ready"},
        },
    )
    async def predict_customer(
        caller: PredictAccess, customer_id: CustomerId, session: SessionDep, served: ServedModelDep
    ) -> Response:
        """Scores the customer's stored features through the same cache and micro-batcher as
        `POST /predict`; the answer carries the customer's id."""
        try:
            customer = await CustomerRepository(session).get(customer_id)
        except CustomerNotFound as error:
            raise not_found(error.external_id) from None
        features = with_defaults(customer_features(customer), served.artifact.schema)
        # Release the connection before waiting on the model.
        await session.close()
        answer = await served.pipeline.predict_features(customer.external_id, features)
        return Response(answer, media_type="application/json")
