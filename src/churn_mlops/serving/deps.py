"""What routes receive from the app state that the lifespan filled in."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from churn_mlops.model.inference import ChurnPredictor
from churn_mlops.serving.bodies import PredictionBodies
from churn_mlops.serving.errors import ModelNotReady
from churn_mlops.settings import Settings


def get_predictor(request: Request) -> ChurnPredictor:
    predictor: ChurnPredictor | None = request.app.state.predictor
    if predictor is None:
        raise ModelNotReady("The model is still loading; retry in a moment.")
    return predictor


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_bodies(request: Request) -> PredictionBodies:
    bodies: PredictionBodies = request.app.state.bodies
    return bodies


PredictorDep = Annotated[ChurnPredictor, Depends(get_predictor)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
BodiesDep = Annotated[PredictionBodies, Depends(get_bodies)]
