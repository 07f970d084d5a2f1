"""Health probes and the served model's metadata."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from churn_mlops.api.schemas.problem import Problem
from churn_mlops.api.schemas.status import LiveStatus, ReadyStatus
from churn_mlops.api.scopes import AUTH_RESPONSES, require_scope
from churn_mlops.cache import BreakerState, PredictionCache
from churn_mlops.core.errors import ModelNotReady
from churn_mlops.core.model_info import ModelInfo
from churn_mlops.db.engine import Database
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.security.principal import Scope


def redis_health(cache: PredictionCache | None) -> Literal["disabled", "ok", "degraded"]:
    """Redis as readiness sees it: its outage degrades the cache, never the service."""
    if cache is None or not cache.l2_enabled:
        return "disabled"
    return "ok" if cache.stats().l2.breaker_state == BreakerState.CLOSED else "degraded"


async def database_health(database: Database | None) -> Literal["disabled", "ok", "degraded"]:
    """The database as readiness sees it: its outage degrades the customer endpoints only."""
    if database is None:
        return "disabled"
    return "ok" if await database.ping(limit_seconds=0.5) else "degraded"


def build_status_router() -> APIRouter:
    router = APIRouter()

    @router.get("/health/live", tags=["health"], summary="Liveness probe")
    async def live() -> LiveStatus:
        """The process is up and its event loop answers."""
        return LiveStatus(status="ok")

    @router.get(
        "/health/ready",
        tags=["health"],
        summary="Readiness probe",
        response_model=ReadyStatus,
        responses={503: {"model": ReadyStatus, "description": "Still starting"}},
    )
    async def ready(request: Request) -> Any:
        """200 once the model is loaded and warmed up, 503 before."""
        artifact: ModelArtifact | None = request.app.state.artifact
        if artifact is None or request.app.state.pipeline is None:
            body = ReadyStatus(status="starting", model_version=None)
            return JSONResponse(body.model_dump(), status_code=503)
        return ReadyStatus(
            status="ready",
            model_version=artifact.version,
            redis=redis_health(request.app.state.pipeline.cache),
            database=await database_health(request.app.state.database),
        )

    @router.get(
        "/model",
        tags=["model"],
        summary="The served model",
        dependencies=[require_scope(Scope.READ)],
        responses={
            **AUTH_RESPONSES,
            503: {"model": Problem, "description": "The model is not loaded yet"},
        },
    )
    async def model(request: Request) -> ModelInfo:
        """Version, features, decision threshold, hold-out metrics and provenance."""
        artifact: ModelArtifact | None = request.app.state.artifact
        if artifact is None:
            raise ModelNotReady("The model is still loading; retry in a moment.")
        return artifact.info

    return router
