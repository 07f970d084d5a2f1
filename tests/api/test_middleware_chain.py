"""One middleware chain wraps both the raw-ASGI fast path (`POST /predict`) and the FastAPI
routes: whatever it does, it does on both paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from churn_mlops.api import app as app_module
from churn_mlops.api.app import create_app
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.runtime import Runtime
from churn_mlops.settings import Settings
from tests.fixtures.security import api_client, security_settings

FAST = ("POST", "/predict")
ROUTED = ("POST", "/predict/batch")
MAX_BYTES = 4096


def _settings(artifact_dir: Path) -> Settings:
    return Settings(
        model_dir=artifact_dir,
        environment="test",
        fast_predict_enabled=True,
        max_request_bytes=MAX_BYTES,
        gzip_min_bytes=50,
        # Every answer computed, so that two calls answer alike ("cached" apart).
        cache_enabled=False,
        **security_settings(),
    )


def _body(path: str) -> dict[str, Any]:
    one = {"customer_id": "8879-ZKJOF", "features": EXAMPLE_FEATURES}
    return one if path == "/predict" else [one, one]  # type: ignore[return-value]


@pytest.fixture
def client(artifact_dir: Path, artifact: ModelArtifact) -> Iterator[TestClient]:
    with api_client(create_app(_settings(artifact_dir), artifact)) as test_client:
        yield test_client


@pytest.mark.parametrize(("method", "path"), [FAST, ROUTED])
def test_telemetry_headers_on_both_paths(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path, json=_body(path), headers={"X-Request-ID": "abc-1"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "abc-1"
    assert float(response.headers["x-process-time"]) >= 0


@pytest.mark.parametrize(("method", "path"), [FAST, ROUTED])
def test_body_past_the_limit_is_413_on_both_paths(
    client: TestClient, method: str, path: str
) -> None:
    response = client.request(method, path, content=b"[" + b" " * MAX_BYTES + b"]")
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert str(MAX_BYTES) in response.json()["detail"]


@pytest.mark.parametrize(("method", "path"), [FAST, ROUTED])
def test_gzip_on_both_paths_for_clients_that_accept_it(
    client: TestClient, method: str, path: str
) -> None:
    raw = client.request(method, path, json=_body(path), headers={"Accept-Encoding": "identity"})
    packed = client.request(method, path, json=_body(path), headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in raw.headers
    assert packed.headers["content-encoding"] == "gzip"
    # httpx decodes gzip itself: the same answer either way.
    assert packed.json() == raw.json()


def test_a_middleware_added_to_the_chain_applies_to_both_paths(
    artifact_dir: Path, artifact: ModelArtifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = app_module.build_middleware_chain

    def with_marker(endpoint: ASGIApp, runtime: Runtime) -> ASGIApp:
        inner = built(endpoint, runtime)

        async def marker(scope: Scope, receive: Receive, send: Send) -> None:
            async def marked(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", []), (b"x-marker", b"1")]
                await send(message)

            await inner(scope, receive, marked)

        return marker

    monkeypatch.setattr(app_module, "build_middleware_chain", with_marker)
    with api_client(create_app(_settings(artifact_dir), artifact)) as client:
        answers = [client.request(m, p, json=_body(p)) for m, p in (FAST, ROUTED)]
        live = client.get("/health/live")
    assert [a.status_code for a in answers] == [200, 200]
    assert all(a.headers["x-marker"] == "1" for a in [*answers, live])
