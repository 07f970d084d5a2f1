from __future__ import annotations

from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient

from benchmarks.ceilings import FIXED_BODY, create_asgi_app, create_fastapi_app

pytestmark = pytest.mark.anyio


async def _drive(scope: dict[str, Any], incoming: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the raw ASGI app on `incoming` messages; return what it sent."""
    app = create_asgi_app()
    sent: list[dict[str, Any]] = []
    pending = list(incoming)

    async def receive() -> dict[str, Any]:
        return pending.pop(0)

    async def send(message: Any) -> None:
        sent.append(dict(message))

    with anyio.fail_after(5):
        await app(scope, receive, send)
    assert pending == [], "the app left messages unread"
    return sent


async def test_asgi_ceiling_drains_the_whole_body_then_answers_the_fixed_body() -> None:
    chunks = [
        {"type": "http.request", "body": b'{"a":', "more_body": True},
        {"type": "http.request", "body": b"1}", "more_body": False},
    ]
    sent = await _drive({"type": "http", "method": "POST", "path": "/anything"}, chunks)
    assert sent == [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(FIXED_BODY)).encode()),
            ],
        },
        {"type": "http.response.body", "body": FIXED_BODY},
    ]


async def test_asgi_ceiling_completes_the_lifespan_protocol() -> None:
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = await _drive({"type": "lifespan"}, messages)
    assert sent == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]


def test_fastapi_ceiling_answers_the_fixed_body_to_any_post() -> None:
    with TestClient(create_fastapi_app()) as client:
        response = client.post("/predict", content=b"ignored")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == FIXED_BODY
