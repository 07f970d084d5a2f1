"""RequestTelemetryMiddleware driven with raw ASGI messages."""

from __future__ import annotations

import logging

import pytest
from starlette.types import Message, Receive, Scope, Send

from churn_mlops.api.telemetry import RequestTelemetryMiddleware


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 201, "headers": [(b"a", b"b")]})
    await send({"type": "http.response.body", "body": b"x", "more_body": True})
    await send({"type": "http.response.body", "body": b"y"})


async def _run(middleware: RequestTelemetryMiddleware, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    return sent


HTTP_SCOPE: Scope = {"type": "http", "method": "POST", "path": "/predict", "headers": []}


@pytest.mark.anyio
async def test_adds_process_time_and_keeps_other_headers() -> None:
    sent = await _run(RequestTelemetryMiddleware(_app, slow_request_ms=1000), HTTP_SCOPE)
    headers = dict(sent[0]["headers"])
    assert headers[b"a"] == b"b"
    assert 0 <= float(headers[b"x-process-time"]) < 1
    assert [m["type"] for m in sent] == ["http.response.start", *["http.response.body"] * 2]


@pytest.mark.anyio
async def test_logs_requests_slower_than_the_threshold(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="churn_mlops.requests"):
        await _run(RequestTelemetryMiddleware(_app, slow_request_ms=1e-6), HTTP_SCOPE)
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("slow request: POST /predict -> 201 in ")


@pytest.mark.anyio
async def test_fast_requests_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="churn_mlops.requests"):
        await _run(RequestTelemetryMiddleware(_app, slow_request_ms=10_000), HTTP_SCOPE)
    assert caplog.records == []


@pytest.mark.anyio
async def test_passes_non_http_scopes_through() -> None:
    sent = await _run(RequestTelemetryMiddleware(_app, slow_request_ms=1000), {"type": "lifespan"})
    assert b"x-process-time" not in dict(sent[0]["headers"])
