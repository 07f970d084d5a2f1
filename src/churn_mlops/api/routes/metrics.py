"""`GET /metrics`: the Prometheus text exposition of every worker of this server."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.responses import Response

from churn_mlops.api.deps import RuntimeDep
from churn_mlops.api.scopes import AUTH_RESPONSES, RequireScope
from churn_mlops.core.errors import ModelNotReady
from churn_mlops.security.principal import Scope


def build_metrics_router(*, require_auth: bool) -> APIRouter:
    """`GET /metrics`, public unless `require_auth` (CHURN_METRICS_REQUIRE_AUTH): then it needs
    the read scope, declared on the route like every other."""
    router = APIRouter(tags=["monitoring"])

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        dependencies=[Depends(RequireScope(Scope.READ))] if require_auth else [],
        responses={
            **(AUTH_RESPONSES if require_auth else {}),
            200: {
                "description": "Prometheus text format 0.0.4",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
        },
    )
    async def prometheus_metrics(runtime: RuntimeDep) -> Response:
        """Request rates, latencies, batching, cache, database pool and prediction-log figures
        summed over this server's workers (a scrape may land on any of them)."""
        if runtime.metrics is None:
            raise ModelNotReady("Metrics are not started yet.")
        body, content_type = runtime.metrics.exposition()
        return Response(body, media_type=content_type)

    return router
