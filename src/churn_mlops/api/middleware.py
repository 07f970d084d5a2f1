"""The one middleware chain, wrapped around both the fast path and the FastAPI routes.

From the outside in: the per-request profiler (when enabled), telemetry (request id, timing,
slow log, metrics), compression, the body limits (size per route, JSON only), then the
dispatch that sends `POST /predict` to the raw-ASGI fast path and everything else to FastAPI.
A middleware added to `build_middleware_chain` applies to both paths. Every layer is pure
ASGI: none buffers a response or builds a Request per call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from churn_mlops.api.errors import problem_body, problem_bytes
from churn_mlops.api.scopes import LOGIN_PATH
from churn_mlops.api.telemetry import RequestTelemetryMiddleware
from churn_mlops.core.errors import ServiceError
from churn_mlops.observability.logging import RequestIds
from churn_mlops.observability.profiling import Authorize, Refusal, RequestProfiler
from churn_mlops.runtime import Runtime
from churn_mlops.security.guard import RequestGuard
from churn_mlops.security.limits import RequestBodyLimits
from churn_mlops.security.principal import Scope as AuthScope


@dataclass(frozen=True, slots=True)
class RawRoute:
    """What the dispatch leaves in `scope["route"]`: the path template, as a FastAPI route
    carries it, for telemetry to label the request with."""

    path: str


class ParsedRoutes(Protocol):
    """Raw endpoints of paths with parameters: `arguments` says which requests they answer
    (a template of `templates` and what `answer` takes), None for FastAPI."""

    templates: tuple[str, ...]

    def arguments(self, scope: Scope) -> tuple[str, Any] | None: ...

    async def answer(self, template: str, arguments: Any, scope: Scope, send: Send) -> None: ...


class ParsedBodyRoutes(Protocol):
    """Like `ParsedRoutes`, for endpoints that read a body (the Open Inference Protocol's)."""

    templates: tuple[str, ...]

    def arguments(self, scope: Scope) -> tuple[str, Any] | None: ...

    async def answer_with_body(
        self, template: str, arguments: Any, scope: Scope, receive: Receive, send: Send
    ) -> None: ...


class RawRouteDispatch:
    """Sends each request whose (method, path) is in `raw_routes` to its raw-ASGI endpoint,
    each that `parsed` takes to it, the rest to `app`, and sets `scope["route"]` so that
    telemetry labels all alike.

    The route is a plain object of our own rather than FastAPI's route context, whose `path`
    is computed through properties at every read (docs/performance.md, "The restructuring").
    """

    def __init__(
        self,
        app: ASGIApp,
        raw_routes: Mapping[tuple[str, str], ASGIApp],
        parsed: Sequence[ParsedRoutes] = (),
        parsed_with_body: Sequence[ParsedBodyRoutes] = (),
    ) -> None:
        self.app = app
        self.raw_routes = {
            key: (endpoint, RawRoute(key[1])) for key, endpoint in raw_routes.items()
        }
        self.parsed = tuple(parsed)
        self.parsed_with_body = tuple(parsed_with_body)
        templates = [t for routes in parsed for t in routes.templates]
        templates += [t for routes in parsed_with_body for t in routes.templates]
        self._templates = {t: RawRoute(t) for t in templates}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = self.raw_routes.get((scope["method"], scope["path"]))
            if found is not None:
                endpoint, scope["route"] = found
                await endpoint(scope, receive, send)
                return
            for routes in self.parsed:
                matched = routes.arguments(scope)
                if matched is not None:
                    scope["route"] = self._templates[matched[0]]
                    await routes.answer(*matched, scope, send)
                    return
            for body_routes in self.parsed_with_body:
                matched = body_routes.arguments(scope)
                if matched is not None:
                    scope["route"] = self._templates[matched[0]]
                    await body_routes.answer_with_body(*matched, scope, receive, send)
                    return
        await self.app(scope, receive, send)


OWN_BODY_PREFIX = "/v2/"
"""The Open Inference Protocol's routes (api/v2/rest.py): they take binary and compressed
bodies up to `CHURN_MAX_REQUEST_BYTES` and enforce that limit and compress answers themselves."""

LARGE_BODY_PATHS = frozenset({"/predict/batch"})
"""The routes whose body may be as large as `CHURN_MAX_REQUEST_BYTES`; every other route takes
at most `security.limits.SMALL_BODY_BYTES`."""


class NegotiatedGZip:
    """Starlette's GZipMiddleware for clients that accept gzip; nobody else pays for it (its
    identity path wraps `send` on every request)."""

    def __init__(self, app: ASGIApp, minimum_size: int, level: int = 1) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size, compresslevel=level)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"accept-encoding":
                    # The Open Inference Protocol's routes compress their own answers (gzip or
                    # deflate, with the binary extension's header counted before compression).
                    if b"gzip" in value and not scope["path"].startswith(OWN_BODY_PREFIX):
                        await self.gzip(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


def build_middleware_chain(endpoint: ASGIApp, runtime: Runtime) -> ASGIApp:
    """`endpoint` (the dispatch to both paths) inside every middleware the service runs."""
    settings = runtime.settings
    chain: ASGIApp = RequestBodyLimits(
        endpoint,
        max_bytes=settings.max_request_bytes,
        render=problem_bytes,
        large_body_paths=LARGE_BODY_PATHS,
        form_paths=(LOGIN_PATH,),
        own_body_prefix=OWN_BODY_PREFIX,
    )
    chain = NegotiatedGZip(chain, minimum_size=settings.gzip_min_bytes, level=settings.gzip_level)
    chain = RequestTelemetryMiddleware(
        chain,
        slow_request_ms=settings.slow_request_ms,
        recorder=runtime.metrics.recorder if runtime.metrics is not None else None,
        request_ids=RequestIds(),
    )
    if settings.profiling_enabled:
        # Outermost: `?profile=1` profiles everything the request goes through.
        chain = RequestProfiler(chain, profiling_authorizer(runtime))
    return chain


def profiling_authorizer(runtime: Runtime) -> Authorize:
    """`?profile=1` is for the admin scope; with authentication off, only when
    `CHURN_PROFILING_WITHOUT_AUTH` says so (refused in production by the settings)."""
    settings, authenticator = runtime.settings, runtime.security.authenticator
    guard = RequestGuard(authenticator, None, AuthScope.ADMIN)
    problem = [(b"content-type", b"application/problem+json")]

    async def authorize(scope: Scope) -> Refusal | None:
        if authenticator is None:
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
