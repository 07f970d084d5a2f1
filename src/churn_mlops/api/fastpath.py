"""`POST /predict` as a raw ASGI endpoint.

FastAPI's routing, dependency resolution and middleware stack cost about as much per request as
the whole prediction, so `/predict` is answered here, before them. It validates with the same
parser, answers errors with the same problem documents, and the FastAPI route of the same path
stays registered for the OpenAPI document (and serves when the fast path is off).
"""

from __future__ import annotations

import logging

from starlette.types import Message, Receive, Scope, Send

from churn_mlops.api.errors import log_unexpected_error, problem_bytes
from churn_mlops.core.errors import ModelNotReady, ServiceError
from churn_mlops.runtime import Runtime
from churn_mlops.security.guard import RequestGuard

logger = logging.getLogger("churn_mlops.api")

JSON_HEADERS = [(b"content-type", b"application/json")]
PROBLEM_HEADERS = [(b"content-type", b"application/problem+json")]


async def read_body(receive: Receive) -> bytes:
    """The whole request body; a single chunk, the usual case, is not copied. (The middleware
    chain's size limit refuses a body past the limit while it is received.)"""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while message.get("more_body", False):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


class FastPredictEndpoint:
    """Answers `POST /predict` from the runtime's served model, after the guard admitted the
    request (credentials, scope, rate limit)."""

    def __init__(self, runtime: Runtime, guard: RequestGuard) -> None:
        self.model = runtime.model
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.guard.admit(scope)
            served = self.model.current
            if served is None:
                raise ModelNotReady("The model is still loading; retry in a moment.")
            body = await served.pipeline.predict_one(await read_body(receive))
        except ServiceError as error:
            await send_response(send, error.status, problem_bytes(error), problem_headers(error))
            return
        except Exception as error:
            log_unexpected_error("POST /predict", error)
            failure = ServiceError("The server failed to answer this request.")
            await send_response(send, 500, problem_bytes(failure), PROBLEM_HEADERS)
            return
        await send_response(send, 200, body, JSON_HEADERS)


def problem_headers(error: ServiceError) -> list[tuple[bytes, bytes]]:
    if not error.headers:
        return PROBLEM_HEADERS
    extra = [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    return PROBLEM_HEADERS + extra


async def send_response(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})
