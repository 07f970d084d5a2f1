"""Pure ASGI middleware: it wraps `send` instead of buffering responses like
BaseHTTPMiddleware, so it costs a few microseconds per request."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("churn_mlops.requests")


class ProcessTimeMiddleware:
    """Adds `X-Process-Time` (seconds until the response started) and logs slow requests."""

    def __init__(self, app: ASGIApp, slow_request_ms: float) -> None:
        self.app = app
        self.slow_request_seconds = slow_request_ms / 1000.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_with_timing(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed = time.perf_counter() - started
                headers = list(message.get("headers", ()))
                headers.append((b"x-process-time", f"{elapsed:.6f}".encode()))
                message["headers"] = headers
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                elapsed = time.perf_counter() - started
                if elapsed > self.slow_request_seconds:
                    logger.warning(
                        "slow request: %s %s -> %d in %.1f ms",
                        scope["method"],
                        scope["path"],
                        status,
                        elapsed * 1000,
                    )
            await send(message)

        await self.app(scope, receive, send_with_timing)
