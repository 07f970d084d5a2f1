"""`GET /metrics`: the Prometheus text exposition of every worker of this server."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from churn_mlops.observability.metrics import ServiceMetrics


def build_metrics_router(metrics: ServiceMetrics) -> APIRouter:
    router = APIRouter(tags=["monitoring"])

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text format 0.0.4",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def prometheus_metrics() -> Response:
        """Request rates, latencies, batching, cache, database pool and prediction-log figures
        summed over this server's workers (a scrape may land on any of them)."""
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return router
