"""A client that leaves in the middle of its body is not a server error."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient


def test_batch_body_cut_by_a_disconnect_is_not_logged_as_an_error(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    app: Any = client.app
    messages = iter(
        [
            {"type": "http.request", "body": b'[{"features": {', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict/batch",
        "raw_path": b"/predict/batch",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"x-api-key", client.headers["x-api-key"].encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        # What a server hands every request: a copy of the lifespan's state.
        "state": dict(client.app_state),
    }

    with caplog.at_level(logging.ERROR):
        assert client.portal is not None
        client.portal.call(app, scope, receive, send)

    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert statuses == [400]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
