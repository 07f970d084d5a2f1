"""Two servers that do no work, to show how fast the stack under the service can go at all.

Both run under the same uvicorn, uvloop and httptools as the service, so the gap between them
and the service is what the service's own code costs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from starlette.responses import Response

# The shape of a prediction, so that the bytes on the wire match the service's answers.
FIXED_BODY = (
    b'{"customer_id":null,"churn_probability":0.5,"will_churn":true,"model_version":"ceiling"}'
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(FIXED_BODY)).encode()),
]


def create_fastapi_app() -> FastAPI:
    """A FastAPI app whose `POST /predict` reads nothing and answers a fixed body."""
    app = FastAPI(title="bench ceiling: bare FastAPI", openapi_url=None, docs_url=None)

    @app.post("/predict")
    async def predict() -> Response:
        """The fixed body."""
        return Response(FIXED_BODY, media_type="application/json")

    return app


async def _fixed_answer(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        # Taking part in the lifespan protocol makes uvicorn log each worker's start-up, which
        # is how the bench knows every worker is up.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    # Drain the request so that the connection can carry the next one.
    while (await receive()).get("more_body", False):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": FIXED_BODY})


def create_asgi_app() -> AsgiApp:
    """A raw ASGI app, no framework, answering the fixed body to any request."""
    return _fixed_answer
