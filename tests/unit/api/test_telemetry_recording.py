"""RequestTelemetryMiddleware's recording, driven with raw ASGI messages."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from starlette.types import Message, Receive, Scope, Send

from churn_mlops.api.middleware import RawRouteDispatch
from churn_mlops.api.telemetry import RequestTelemetryMiddleware
from churn_mlops.observability.logging import request_id_var
from churn_mlops.observability.recorders import RequestRecorder


def http_scope(path: str, route: object | None = None) -> Scope:
    scope: Scope = {"type": "http", "method": "GET", "path": path, "headers": []}
    if route is not None:
        scope["route"] = route
    return scope


async def run(middleware: RequestTelemetryMiddleware, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    return sent


def counts(recorder: RequestRecorder) -> dict[tuple[str, str, int], int]:
    return {key: sum(buckets) for key, buckets, _ in recorder.deltas()}


async def answer(scope: Scope, receive: Receive, send: Send) -> None:
    # What the router leaves in the scope: the matched route's template.
    scope["route"] = SimpleNamespace(path="/customers/{customer_id}")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def crash(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("boom")


@pytest.mark.anyio
async def test_records_the_route_template_not_the_raw_path() -> None:
    recorder = RequestRecorder()
    await run(
        RequestTelemetryMiddleware(answer, 1000, recorder), http_scope("/customers/8879-ZKJOF")
    )
    assert counts(recorder) == {("/customers/{customer_id}", "GET", 200): 1}
    assert recorder.in_flight == 0


@pytest.mark.anyio
async def test_raw_route_dispatch_names_the_route_of_what_it_answers() -> None:
    recorder = RequestRecorder()

    async def raw_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    raw_routes = {("GET", "/predict"): raw_endpoint}
    middleware = RequestTelemetryMiddleware(RawRouteDispatch(answer, raw_routes), 1000, recorder)
    await run(middleware, http_scope("/predict"))
    assert counts(recorder) == {("/predict", "GET", 200): 1}


@pytest.mark.anyio
async def test_probes_and_metrics_are_not_recorded() -> None:
    recorder = RequestRecorder()
    for path in ("/health/live", "/health/ready", "/metrics"):
        await run(RequestTelemetryMiddleware(answer, 1000, recorder), http_scope(path))
    assert counts(recorder) == {}


@pytest.mark.anyio
async def test_a_crash_before_the_response_is_recorded_as_500() -> None:
    recorder = RequestRecorder()
    with pytest.raises(RuntimeError, match="boom"):
        await run(RequestTelemetryMiddleware(crash, 1000, recorder), http_scope("/x"))
    assert counts(recorder) == {("unmatched", "GET", 500): 1}
    assert recorder.in_flight == 0


@pytest.mark.anyio
async def test_the_request_id_is_set_for_the_request_and_sent_back() -> None:
    seen: list[bytes | None] = []

    async def look(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(request_id_var.get())
        await answer(scope, receive, send)

    scope = http_scope("/model")
    scope["headers"] = [(b"x-request-id", b"abc-1")]
    sent = await run(RequestTelemetryMiddleware(look, 1000), scope)
    assert seen == [b"abc-1"]
    assert (b"x-request-id", b"abc-1") in sent[0]["headers"]
