"""`/cache/stats` and `DELETE /cache`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from churn_mlops.api.deps import PipelineDep
from churn_mlops.api.schemas.problem import Problem
from churn_mlops.api.scopes import AUTH_RESPONSES, AdminAccess, ReadAccess

_REFUSALS: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    503: {"model": Problem, "description": "The model is not loaded yet"},
}


def build_cache_router() -> APIRouter:
    router = APIRouter(tags=["cache"])

    @router.get(
        "/cache/stats",
        summary="Prediction cache statistics",
        responses=_REFUSALS,
    )
    async def cache_stats(caller: ReadAccess, pipeline: PipelineDep) -> dict[str, Any]:
        """Hits and misses per level, hit rate, sizes, and the Redis circuit breaker's state."""
        if pipeline.cache is None:
            return {"enabled": False}
        return {"enabled": True, **pipeline.cache.stats().as_dict()}

    @router.delete(
        "/cache",
        summary="Clear the prediction cache of the served model",
        responses=_REFUSALS,
    )
    async def clear_cache(caller: AdminAccess, pipeline: PipelineDep) -> dict[str, Any]:
        """Remove this model version's entries from this worker's memory and from Redis.

        Other workers drop theirs as their in-memory entries expire (`CHURN_CACHE_L1_TTL_SECONDS`).
        """
        if pipeline.cache is None:
            return {"enabled": False, "l1_removed": 0, "l2_removed": 0}
        result = await pipeline.cache.clear()
        return {"enabled": True, "l1_removed": result.l1_removed, "l2_removed": result.l2_removed}

    return router
