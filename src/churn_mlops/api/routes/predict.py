"""`/predict` and `/predict/batch`.

Both parse their body themselves (one validating pass over the raw bytes) and answer JSON bytes
that the pipeline serialised once. `POST /predict` is normally answered by the fast path before
FastAPI routing (see api/fastpath.py); this route documents it and serves when that is off.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from churn_mlops.api.deps import PipelineDep
from churn_mlops.api.schemas.predictions import BatchPredictResponse, PredictResponse
from churn_mlops.api.schemas.problem import Problem
from churn_mlops.api.scopes import AUTH_RESPONSES, PredictAccess
from churn_mlops.prediction.strict_parser import openapi_batch, openapi_single

_REFUSALS: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    409: {
        "model": Problem,
        "description": '"explain": true, and the served model has no explanation data',
    },
    413: {"model": Problem, "description": "The body is too large or nested too deep"},
    422: {"model": Problem, "description": "A field is missing, of the wrong type or out of range"},
    503: {"model": Problem, "description": "Not ready yet, or overloaded: see Retry-After"},
}


def build_prediction_router(max_batch_rows: int) -> APIRouter:
    """The routes; their bodies are documented by reference to `PredictRequest`, which the
    OpenAPI document takes from the served model's feature schema (`api/app.py`)."""
    router = APIRouter(tags=["predictions"])

    @router.post(
        "/predict",
        summary="Predict one customer's churn",
        response_model=PredictResponse,
        responses=_REFUSALS,
        openapi_extra=openapi_single(),
    )
    async def predict(caller: PredictAccess, request: Request, pipeline: PipelineDep) -> Response:
        """Churn probability and decision for one customer."""
        answer = await pipeline.predict_one(await request.body())
        return Response(answer, media_type="application/json")

    @router.post(
        "/predict/batch",
        summary="Predict many customers' churn in one model call",
        response_model=BatchPredictResponse,
        responses={
            **_REFUSALS,
            413: {
                "model": Problem,
                "description": "More rows than the batch limit, a body too large or too deep",
            },
        },
        openapi_extra=openapi_batch(max_batch_rows),
    )
    async def predict_batch(
        caller: PredictAccess, request: Request, pipeline: PipelineDep
    ) -> Response:
        """Churn predictions for a list of customers, in the order given."""
        answer = await pipeline.predict_many(await request.body())
        return Response(answer, media_type="application/json")

    return router
