"""`/predict` and `/predict/batch`."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from churn_mlops.model.inference import ChurnPredictor
from churn_mlops.schemas import BatchPredictResponse, PredictResponse, Problem
from churn_mlops.serving.bodies import PredictionBodies
from churn_mlops.serving.deps import PredictorDep

_REFUSALS: dict[int | str, dict[str, Any]] = {
    422: {"model": Problem, "description": "A field is missing, of the wrong type or out of range"},
    503: {"model": Problem, "description": "The model is not loaded yet"},
}


def _answer(customer_id: str | None, probability: float, predictor: ChurnPredictor) -> Any:
    return {
        "customer_id": customer_id,
        "churn_probability": probability,
        "will_churn": probability >= predictor.threshold,
        "model_version": predictor.version,
    }


def _json(document: Any) -> Response:
    return Response(orjson.dumps(document), media_type="application/json")


def build_prediction_router(bodies: PredictionBodies) -> APIRouter:
    router = APIRouter(tags=["predictions"])

    @router.post(
        "/predict",
        summary="Predict one customer's churn",
        response_model=PredictResponse,
        responses=_REFUSALS,
        openapi_extra=bodies.openapi_single(),
    )
    async def predict(request: Request, predictor: PredictorDep) -> Response:
        """Churn probability and decision for one customer."""
        item = bodies.single(await request.body())
        probability = predictor.score_one(item.features.__dict__)
        return _json(_answer(item.customer_id, probability, predictor))

    @router.post(
        "/predict/batch",
        summary="Predict many customers' churn in one model call",
        response_model=BatchPredictResponse,
        responses={
            **_REFUSALS,
            413: {"model": Problem, "description": "More rows than the batch limit"},
        },
        openapi_extra=bodies.openapi_batch(),
    )
    async def predict_batch(request: Request, predictor: PredictorDep) -> Response:
        """Churn predictions for a list of customers, in the order given."""
        items = bodies.batch(await request.body())
        probabilities = predictor.score_many([item.features.__dict__ for item in items]).tolist()
        return _json(
            {
                "predictions": [
                    _answer(item.customer_id, p, predictor)
                    for item, p in zip(items, probabilities, strict=True)
                ]
            }
        )

    return router
