"""The app factory: the routes, the error handlers and the OpenAPI document. Every component
comes from the Runtime that the lifespan opens (`churn_mlops.runtime`); the middleware chain
(`api.middleware`) is built around both the fast path and these routes once it is open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts
from starlette.types import ASGIApp, Receive, Scope, Send

from churn_mlops import __version__
from churn_mlops.api.customer_fastpath import CustomerReadEndpoints
from churn_mlops.api.deps import State
from churn_mlops.api.errors import document_problem_responses, install_error_handlers
from churn_mlops.api.fastpath import FastPredictEndpoint
from churn_mlops.api.middleware import RawRouteDispatch, build_middleware_chain
from churn_mlops.api.routes.auth import build_auth_router
from churn_mlops.api.routes.cache import build_cache_router
from churn_mlops.api.routes.compare import build_compare_router
from churn_mlops.api.routes.customers import build_customers_router
from churn_mlops.api.routes.docs import build_docs_router
from churn_mlops.api.routes.history import build_history_router
from churn_mlops.api.routes.metrics import build_metrics_router
from churn_mlops.api.routes.model import build_model_router
from churn_mlops.api.routes.outcomes import build_outcomes_router
from churn_mlops.api.routes.predict import build_prediction_router
from churn_mlops.api.routes.status import build_status_router
from churn_mlops.api.scopes import RAW_ROUTE_SCOPES
from churn_mlops.api.v2.rest import OpenInferenceEndpoints
from churn_mlops.api.v2.routes import build_v2_router, document_v2_errors
from churn_mlops.api.v2.schemas import InferRequest as V2InferRequest
from churn_mlops.core.request_models import request_models
from churn_mlops.core.schema import FeatureSchema
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.observability.logging import configure_logging
from churn_mlops.prediction.strict_parser import shipped_example_schema
from churn_mlops.runtime import Runtime, open_runtime
from churn_mlops.security.authenticator import KeySource
from churn_mlops.security.guard import RequestGuard
from churn_mlops.security.principal import Scope as AuthScope
from churn_mlops.settings import Settings

OPENAPI_URL = "/openapi.json"


class ChurnAPI(FastAPI):
    """FastAPI, served through the middleware chain that the lifespan builds around it and
    the raw-ASGI fast path."""

    runtime: Runtime | None = None
    """The open Runtime, for a test or a benchmark looking in; routes get theirs from the
    lifespan state (`api.deps`)."""
    key_source: KeySource | None = None
    """API keys to verify instead of the database's (tests; an app without a database)."""
    _handler: ASGIApp | None = None

    def __init__(self, settings: Settings, **options: Any) -> None:
        super().__init__(**options)
        self.settings = settings

    def use_keys(self, keys: KeySource) -> None:
        """Verify API keys against `keys`, from the next start on (and now, if started)."""
        self.key_source = keys
        if self.runtime is not None:
            self.runtime.security.use_keys(keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._handler
        if handler is None or scope["type"] == "lifespan":
            await super().__call__(scope, receive, send)
            return
        await handler(scope, receive, send)

    def attach(self, runtime: Runtime) -> None:
        """Serve through `runtime`: the middleware chain around the fast path and the routes."""
        raw_routes: dict[tuple[str, str], ASGIApp] = {}
        if runtime.settings.fast_predict_enabled:
            security = runtime.security
            for (method, path), scope in RAW_ROUTE_SCOPES.items():
                self._check_declared(method, path)
                guard = RequestGuard(security.authenticator, security.limiter, scope)
                raw_routes[(method, path)] = FastPredictEndpoint(runtime, guard)
        reads = CustomerReadEndpoints(
            runtime,
            RequestGuard(
                runtime.security.authenticator, runtime.security.limiter, str(AuthScope.READ)
            ),
        )
        for template in reads.templates:
            self._check_declared("GET", template)
        open_inference = OpenInferenceEndpoints(
            runtime,
            RequestGuard(
                runtime.security.authenticator, runtime.security.limiter, str(AuthScope.PREDICT)
            ),
        )
        for template in open_inference.templates:
            self._check_declared("POST" if template.endswith("/infer") else "GET", template)
        routed = super().__call__
        dispatch = RawRouteDispatch(
            routed, raw_routes, parsed=[reads], parsed_with_body=[open_inference]
        )
        self._handler = build_middleware_chain(dispatch, runtime)
        self.runtime = runtime

    def detach(self) -> None:
        self._handler = None
        self.runtime = None

    def _check_declared(self, method: str, path: str) -> None:
        """A raw route answers in place of a FastAPI route of the same path, which documents it
        in the OpenAPI and serves when the fast path is off."""
        for route in iter_route_contexts(self.routes):
            if route.path == path and method in (route.methods or ()):
                return
        raise LookupError(f"no FastAPI route declares {method} {path}")


def create_app(settings: Settings, artifact: ModelArtifact | None = None) -> ChurnAPI:
    """The churn prediction API; `artifact` defaults to the one in `settings.model_dir`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        async with open_runtime(settings, artifact, key_source=api.key_source) as runtime:
            api.attach(runtime)
            try:
                async with AsyncExitStack() as grpc_stack:
                    if settings.grpc_port is not None:
                        # Imported only when on: the generated protobuf modules register
                        # `inference.*` in the process's descriptor pool (see api/v2/proto).
                        from churn_mlops.api.v2.grpc_server import serve_grpc

                        # Stopped (draining its calls) before the Runtime closes.
                        await grpc_stack.enter_async_context(
                            serve_grpc(runtime, settings.grpc_port)
                        )
                    yield {"runtime": runtime}
            finally:
                api.detach()

    api = ChurnAPI(
        settings,
        title="churn-mlops",
        summary="Customer churn predictions from a gradient-boosting model trained on Telco data.",
        version=__version__,
        lifespan=lifespan,
        openapi_url=OPENAPI_URL,
        # Served by build_docs_router, with Swagger UI and ReDoc from the package, not a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(api)
    api.include_router(build_prediction_router(settings.max_batch_rows))
    api.include_router(build_auth_router())
    api.include_router(build_status_router())
    api.include_router(build_compare_router())
    api.include_router(build_model_router())
    api.include_router(build_cache_router())
    api.include_router(build_customers_router())
    api.include_router(build_outcomes_router())
    api.include_router(build_v2_router())
    api.include_router(build_history_router())
    api.include_router(build_docs_router(api.title, OPENAPI_URL))
    if settings.metrics_enabled:
        api.include_router(build_metrics_router(require_auth=settings.metrics_require_auth))
    _document_raw_bodies(api, artifact)
    return api


def create_app_from_env() -> FastAPI:
    """Entry point for uvicorn workers: settings come from `CHURN_*` variables."""
    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json)
    return create_app(settings)


def _documented_schema(app: ChurnAPI, artifact: ModelArtifact | None) -> FeatureSchema:
    """The feature schema the OpenAPI document describes: the served model's; before one is
    served, the artifact the app was made with, else the shipped example's (the default)."""
    runtime = app.runtime
    served = None if runtime is None else runtime.model.current
    if served is not None:
        return served.pipeline.schema
    if artifact is not None:
        return artifact.schema
    return shipped_example_schema()


def _document_raw_bodies(app: ChurnAPI, artifact: ModelArtifact | None) -> None:
    """Add the schemas of the bodies the prediction routes parse themselves to the OpenAPI:
    the request models of the served model's feature schema, with its example. Built at the
    first read, and again when the served model's schema changes (a swap to a model trained
    on other columns); otherwise the same document object is served."""
    documented: list[FeatureSchema] = []

    def openapi() -> dict[str, Any]:
        features = _documented_schema(app, artifact)
        document = app.openapi_schema
        if document is None or not documented or not _same(documented[0], features):
            document = app.openapi_schema = _build_openapi(app, features)
            documented[:] = [features]
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _same(documented: FeatureSchema, served: FeatureSchema) -> bool:
    return documented is served or documented.sha256 == served.sha256


def _build_openapi(app: FastAPI, features: FeatureSchema) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        routes=app.routes,
    )
    request_schema = request_models(features).request.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(request_schema.pop("$defs", {}))
    components["PredictRequest"] = request_schema
    infer_schema = V2InferRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(infer_schema.pop("$defs", {}))
    components["InferRequest"] = infer_schema
    document_problem_responses(schema)
    document_v2_errors(schema)
    return schema
