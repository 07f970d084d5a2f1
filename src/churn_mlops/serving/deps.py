"""What routes receive from the app state that the lifespan filled in."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from churn_mlops.serving.errors import ModelNotReady
from churn_mlops.serving.pipeline import PredictionPipeline


def get_pipeline(request: Request) -> PredictionPipeline:
    pipeline: PredictionPipeline | None = request.app.state.pipeline
    if pipeline is None:
        raise ModelNotReady("The model is still loading; retry in a moment.")
    return pipeline


PipelineDep = Annotated[PredictionPipeline, Depends(get_pipeline)]
