"""The naive baseline: the course chapter's "before" service, kept as the bench's reference.

This is what a first FastAPI model server usually looks like, and it is meant to stay that way:
a synchronous endpoint (so FastAPI runs it in its thread pool), the body parsed into pydantic
models, a pandas DataFrame built per request and encoded the pandas way, the scikit-learn
estimator's `predict_proba` with its default thread pool, the answer validated and serialised
through `response_model`. It computes exactly the service's probabilities, so the bench compares
equal work. Do not optimise it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request

from churn_mlops.api.schemas.predictions import BatchPredictResponse, PredictResponse
from churn_mlops.data.telco_example import FEATURE_NAMES, PredictRequest
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings


class NaiveModel:
    """The artifact's estimator behind a pandas preprocessing step."""

    def __init__(self, artifact: ModelArtifact) -> None:
        self.estimator = artifact.estimator
        self.threshold = artifact.threshold
        self.version = artifact.version
        self.category_codes = {
            name: {value: code for code, value in enumerate(vocabulary)}
            for name, vocabulary in artifact.encoder.vocabularies.items()
        }

    def encode(self, frame: pd.DataFrame) -> Any:
        encoded = frame[list(FEATURE_NAMES)].copy()
        for name, codes in self.category_codes.items():
            encoded[name] = encoded[name].map(codes)
        return encoded.to_numpy(dtype=np.float32)

    def predict(self, requests: list[PredictRequest]) -> list[PredictResponse]:
        frame = pd.DataFrame([request.features.model_dump() for request in requests])
        probabilities = self.estimator.predict_proba(self.encode(frame))[:, 1]
        return [
            PredictResponse(
                customer_id=request.customer_id,
                churn_probability=float(probability),
                will_churn=bool(probability >= self.threshold),
                model_version=self.version,
                cached=False,
            )
            for request, probability in zip(requests, probabilities, strict=True)
        ]


def create_app(settings: Settings) -> FastAPI:
    """The naive service for the artifact in `settings.model_dir`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.model = NaiveModel(ModelArtifact.load(settings.model_dir))
        yield

    app = FastAPI(title="bench baseline: naive churn service", lifespan=lifespan)

    @app.get("/health")
    def health() -> dict[str, str]:
        """The model is loaded."""
        return {"status": "ok"}

    # No `reasons: null`: the service answers without the key when no reasons were asked for.
    @app.post("/predict", response_model=PredictResponse, response_model_exclude_unset=True)
    def predict(body: PredictRequest, request: Request) -> PredictResponse:
        """Churn probability and decision for one customer."""
        model: NaiveModel = request.app.state.model
        return model.predict([body])[0]

    @app.post(
        "/predict/batch", response_model=BatchPredictResponse, response_model_exclude_unset=True
    )
    def predict_batch(body: list[PredictRequest], request: Request) -> BatchPredictResponse:
        """Churn predictions for a list of customers, in the order given."""
        model: NaiveModel = request.app.state.model
        return BatchPredictResponse(predictions=model.predict(body))

    return app


def create_app_from_env() -> FastAPI:
    """Entry point for uvicorn workers: the model directory comes from `CHURN_MODEL_DIR`."""
    return create_app(Settings())
