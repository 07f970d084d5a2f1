"""Pure ASGI middleware: it wraps `send` instead of buffering responses like
BaseHTTPMiddleware, so it costs a few microseconds per request."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from churn_mlops.observability.logging import RequestIds, request_id_var
from churn_mlops.observability.metrics import UNCOUNTED_PATHS, UNMATCHED_ROUTE, RequestRecorder

logger = logging.getLogger("churn_mlops.requests")


class RequestTelemetryMiddleware:
    """Adds `X-Process-Time` (seconds until the response started) and `X-Request-ID` (the
    client's, or a new one; also in every log line of the request), logs slow requests and
    records each request's duration by route template, method and status in `recorder`.

    The route is the template in `scope["route"]` once the request has been answered: FastAPI's
    router puts it there, and so does the dispatch to the fast path (`api.middleware`).
    """

    def __init__(
        self,
        app: ASGIApp,
        slow_request_ms: float,
        recorder: RequestRecorder | None = None,
        request_ids: RequestIds | None = None,
    ) -> None:
        self.app = app
        self.slow_request_seconds = slow_request_ms / 1000.0
        self.recorder = recorder
        self.request_ids = request_ids or RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        recorded = False
        request_id = self.request_ids.accept(scope["headers"])
        request_id_var.set(request_id)
        recorder = self.recorder
        if recorder is not None and scope["path"] in UNCOUNTED_PATHS:
            recorder = None
        if recorder is not None:
            recorder.in_flight += 1

        async def send_with_timing(message: Message) -> None:
            nonlocal status, recorded
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed = time.perf_counter() - started
                headers = list(message.get("headers", ()))
                headers.append((b"x-process-time", f"{elapsed:.6f}".encode()))
                headers.append((b"x-request-id", request_id))
                message["headers"] = headers
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                elapsed = time.perf_counter() - started
                if recorder is not None:
                    recorded = True
                    recorder.in_flight -= 1
                    recorder.finished(self._route(scope), scope["method"], status, elapsed)
                if elapsed > self.slow_request_seconds:
                    logger.warning(
                        "slow request: %s %s -> %d in %.1f ms",
                        scope["method"],
                        scope["path"],
                        status,
                        elapsed * 1000,
                    )
            await send(message)

        try:
            await self.app(scope, receive, send_with_timing)
        finally:
            if recorder is not None and not recorded:
                # An error before the response ended: the server answers 500 if nothing was sent.
                recorder.in_flight -= 1
                elapsed = time.perf_counter() - started
                recorder.finished(self._route(scope), scope["method"], status or 500, elapsed)

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None)
        return path if isinstance(path, str) else UNMATCHED_ROUTE
