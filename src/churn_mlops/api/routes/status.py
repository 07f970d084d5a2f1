"""Health probes."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from churn_mlops.api.deps import StartedRuntimeDep
from churn_mlops.api.schemas.status import LiveStatus, ReadyStatus
from churn_mlops.cache import BreakerState, PredictionCache
from churn_mlops.db.engine import Database


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
    async def ready(runtime: StartedRuntimeDep) -> Any:
        """200 once the model is loaded and warmed up, 503 before."""
        served = None if runtime is None else runtime.model.current
        if runtime is None or served is None:
            body = ReadyStatus(status="starting", model_version=None)
            return JSONResponse(body.model_dump(), status_code=503)
        return ReadyStatus(
            status="ready",
            model_version=served.artifact.version,
            redis=redis_health(served.pipeline.cache),
            database=await database_health(runtime.database),
        )

    return router
