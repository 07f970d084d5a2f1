"""The app factory: builds the FastAPI app from settings and wires its dependencies."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import orjson
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from threadpoolctl import threadpool_limits

from churn_mlops import __version__
from churn_mlops.api.errors import (
    document_problem_responses,
    install_error_handlers,
    problem_body,
    problem_bytes,
)
from churn_mlops.api.fastpath import FastPredictEndpoint
from churn_mlops.api.routes.auth import build_auth_router
from churn_mlops.api.routes.cache import build_cache_router
from churn_mlops.api.routes.customers import build_customers_router
from churn_mlops.api.routes.history import build_history_router
from churn_mlops.api.routes.metrics import build_metrics_router
from churn_mlops.api.routes.predict import build_prediction_router
from churn_mlops.api.routes.status import build_status_router
from churn_mlops.api.scopes import require_scope, secure_routes
from churn_mlops.api.telemetry import RequestTelemetryMiddleware
from churn_mlops.cache import CacheStats, PredictionCache
from churn_mlops.core.errors import ServiceError
from churn_mlops.core.features import EXAMPLE_FEATURES, PredictRequest
from churn_mlops.db.prediction_log import PredictionRecorder, build_prediction_log
from churn_mlops.db.schema import open_database
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.inference import ChurnPredictor
from churn_mlops.observability.logging import RequestIds, configure_logging
from churn_mlops.observability.metrics import (
    PredictionLogStats,
    ServiceMetrics,
    multiprocess_dir,
)
from churn_mlops.observability.profiling import Authorize, Refusal, RequestProfiler
from churn_mlops.prediction.batcher import MicroBatcher, ModelRunner
from churn_mlops.prediction.decoding import RequestDecoder
from churn_mlops.prediction.pipeline import PredictionPipeline
from churn_mlops.prediction.strict_parser import StrictBodyParser
from churn_mlops.security.guard import RequestGuard
from churn_mlops.security.limits import RequestSizeLimit
from churn_mlops.security.principal import Scope as AuthScope
from churn_mlops.security.services import SecurityServices
from churn_mlops.settings import Settings

logger = logging.getLogger("churn_mlops.serving")


class ChurnAPI(FastAPI):
    """FastAPI, with `POST /predict` answered before routing by a raw ASGI endpoint."""

    fast_predict: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.fast_predict is not None
            and scope["type"] == "http"
            and scope["path"] == "/predict"
            and scope["method"] == "POST"
        ):
            scope["app"] = self
            await self.fast_predict(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def build_pipeline(
    artifact: ModelArtifact,
    settings: Settings,
    bodies: StrictBodyParser,
    metrics: ServiceMetrics | None = None,
    recorder: PredictionRecorder | None = None,
) -> PredictionPipeline:
    predictor = ChurnPredictor(artifact)
    decoder = RequestDecoder(predictor.encoder, bodies)
    score = (
        predictor.probabilities if metrics is None else metrics.model.timed(predictor.probabilities)
    )
    runner = ModelRunner(score, offload_min_rows=settings.offload_min_rows)
    batcher = None
    if settings.batcher_enabled:
        batcher = MicroBatcher(
            runner,
            max_batch_size=settings.batch_max_size,
            max_wait=settings.batch_max_wait_ms / 1000.0,
            max_queue=settings.batch_max_queue,
            max_queue_delay=settings.batch_max_queue_delay_ms / 1000.0,
            observe_queue_wait=metrics.model.queue_wait.observe if metrics else None,
        )
    cache = None
    if settings.cache_enabled:
        read_timeout = settings.cache_redis_timeout_ms / 1000.0
        cache = PredictionCache(
            predictor.version,
            key_prefix=settings.cache_key_prefix,
            l1_size=settings.cache_l1_size,
            l1_ttl_seconds=settings.cache_l1_ttl_seconds,
            l2_url=settings.redis_url or None,
            l2_ttl_seconds=settings.cache_l2_ttl_seconds,
            l2_read_timeout=read_timeout,
            l2_write_timeout=4 * read_timeout,
            l2_read_policy=settings.cache_l2_read_policy,
        )
    return PredictionPipeline(predictor, decoder, runner, batcher, cache, recorder)


def create_app(settings: Settings, artifact: ModelArtifact | None = None) -> ChurnAPI:
    """The churn prediction API; `artifact` defaults to the one in `settings.model_dir`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # sklearn's OpenMP pool makes small predictions many times slower and several workers
        # on few cores oversubscribe them (scikit-learn issue #30662).
        threadpool_limits(limits=settings.model_threads)
        # First: a schema that is not current stops the worker before anything else loads.
        app.state.database = await open_database(settings)
        prediction_log = None
        if settings.prediction_log_enabled and app.state.database is not None:
            prediction_log = build_prediction_log(settings, app.state.database.engine)
        loaded = artifact or ModelArtifact.load(settings.model_dir)
        pipeline = build_pipeline(loaded, settings, bodies, metrics, prediction_log)
        pipeline.warm_up(orjson.dumps({"features": EXAMPLE_FEATURES}))
        # Everything allocated so far lives as long as the process: keep it out of the garbage
        # collector's full passes, which would otherwise rescan it while requests wait.
        gc.freeze()
        app.state.artifact, app.state.pipeline = loaded, pipeline
        logger.info("serving model %s from %s", loaded.version, settings.model_dir)
        if metrics is not None:
            metrics.start(settings.metrics_refresh_seconds)
        security.start(app.state.database.sessions if app.state.database else None)
        if prediction_log is not None:
            # Replays what an earlier run spilled; a database that is down only delays that.
            await prediction_log.start()
        app.state.prediction_log = prediction_log
        try:
            yield
        finally:
            app.state.pipeline = None
            await security.stop()
            await pipeline.close()
            # After the pipeline, whose drain answers (and records) the queued predictions;
            # before the database goes: the last rows are written, or spilled.
            if prediction_log is not None:
                await prediction_log.close()
                app.state.prediction_log = None
            app.state.artifact = None
            if app.state.database is not None:
                await app.state.database.dispose()
                app.state.database = None
            if metrics is not None:
                await metrics.close()

    app = ChurnAPI(
        title="churn-mlops",
        summary="Customer churn predictions from a gradient-boosting model trained on Telco data.",
        version=__version__,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.artifact = None
    app.state.pipeline = None
    app.state.database = None
    app.state.prediction_log = None
    bodies = StrictBodyParser(settings.max_batch_rows, settings.max_json_depth)
    security = SecurityServices.from_settings(settings)
    app.state.security = security
    app.state.authenticator, app.state.rate_limiter = security.authenticator, security.limiter
    metrics = ServiceMetrics(multiprocess_dir()) if settings.metrics_enabled else None
    app.state.metrics = metrics
    recorder = metrics.recorder if metrics is not None else None
    request_ids = RequestIds()
    if settings.fast_predict_enabled:
        app.fast_predict = RequestTelemetryMiddleware(
            FastPredictEndpoint(
                RequestGuard(
                    security.authenticator,
                    security.limiter,
                    AuthScope.PREDICT,
                    settings.max_request_bytes,
                )
            ),
            slow_request_ms=settings.slow_request_ms,
            recorder=recorder,
            route="/predict",
            request_ids=request_ids,
        )

    install_error_handlers(app)
    app.include_router(build_prediction_router(bodies))
    app.include_router(build_auth_router())
    app.include_router(build_status_router())
    app.include_router(build_cache_router())
    app.include_router(
        secure_routes(
            build_customers_router(),
            AuthScope.READ,
            overrides={"/customers/{customer_id}/predict": AuthScope.PREDICT},
        )
    )
    app.include_router(secure_routes(build_history_router(), AuthScope.READ))
    if metrics is not None:
        app.include_router(
            build_metrics_router(metrics),
            dependencies=[require_scope(AuthScope.READ)] if settings.metrics_require_auth else [],
        )
        _watch_components(metrics, app)
    # Innermost: a body past the limit is refused before any route reads it.
    app.add_middleware(RequestSizeLimit, max_bytes=settings.max_request_bytes, render=problem_bytes)
    app.add_middleware(GZipMiddleware, minimum_size=settings.gzip_min_bytes)
    app.add_middleware(
        RequestTelemetryMiddleware,
        slow_request_ms=settings.slow_request_ms,
        recorder=recorder,
        request_ids=request_ids,
    )
    if settings.profiling_enabled:
        # Outermost, on both paths: `?profile=1` profiles everything the request goes through.
        authorize = _profiling_authorizer(settings, security)
        if app.fast_predict is not None:
            app.fast_predict = RequestProfiler(app.fast_predict, authorize)
        app.add_middleware(RequestProfiler, authorize=authorize)
    _document_raw_bodies(app)
    return app


def _profiling_authorizer(settings: Settings, security: SecurityServices) -> Authorize:
    """`?profile=1` is for the admin scope; with authentication off, only when
    `CHURN_PROFILING_WITHOUT_AUTH` says so (refused in production by the settings)."""
    guard = RequestGuard(security.authenticator, None, AuthScope.ADMIN, settings.max_request_bytes)
    problem = [(b"content-type", b"application/problem+json")]

    async def authorize(scope: Scope) -> Refusal | None:
        if security.authenticator is None:
            if settings.profiling_without_auth:
                return None
            detail = (
                "Profiling needs the admin scope, and authentication is off: set "
                "CHURN_PROFILING_WITHOUT_AUTH=true to allow it on this machine."
            )
            return 403, problem, problem_body(403, detail)
        try:
            await guard.admit(scope)
        except ServiceError as error:
            extra = [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
            return error.status, problem + extra, problem_bytes(error)
        return None

    return authorize


def create_app_from_env() -> FastAPI:
    """Entry point for uvicorn workers: settings come from `CHURN_*` variables."""
    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json)
    return create_app(settings)


def _watch_components(metrics: ServiceMetrics, app: FastAPI) -> None:
    """Point the metrics at the state the components keep; read from the app state at each
    refresh, so a component built later by the lifespan (or never) is picked up (or reads 0)."""

    def pipeline() -> PredictionPipeline | None:
        current: PredictionPipeline | None = app.state.pipeline
        return current

    def cache_stats() -> CacheStats | None:
        current = pipeline()
        return None if current is None or current.cache is None else current.cache.stats()

    def batcher_stat(read: Callable[[MicroBatcher], int]) -> Callable[[], int | None]:
        def value() -> int | None:
            current = pipeline()
            return None if current is None or current.batcher is None else read(current.batcher)

        return value

    def pool_in_use() -> int | None:
        database = getattr(app.state, "database", None)
        pool = getattr(getattr(database, "engine", None), "pool", None)
        checkedout = getattr(pool, "checkedout", None)
        return None if checkedout is None else int(checkedout())

    def prediction_log_stats() -> PredictionLogStats | None:
        writer = getattr(app.state, "prediction_log", None)
        return None if writer is None else cast(PredictionLogStats, writer.stats())

    metrics.watch_cache(cache_stats)
    metrics.watch_batcher(
        shed=batcher_stat(lambda b: b.stats.shed), queued=batcher_stat(lambda b: b.queued)
    )
    metrics.watch_db_pool(pool_in_use)
    metrics.watch_prediction_log(prediction_log_stats)


def _document_raw_bodies(app: FastAPI) -> None:
    """Add the schemas of the bodies the prediction routes parse themselves to the OpenAPI."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            request_schema = PredictRequest.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(request_schema.pop("$defs", {}))
            components["PredictRequest"] = request_schema
            document_problem_responses(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
