"""A failure nobody foresaw: a bare 500 problem, and a log line without a stack trace or values."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from churn_mlops.api.app import create_app
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings
from tests.fixtures.security import API_KEY_HEADER, with_test_key

LEAKED = "tenure=41 key=churn_secret"


def _explode(*args: object) -> None:
    raise RuntimeError(LEAKED)


@pytest.mark.parametrize(
    ("path", "method", "body"),
    [
        ("/predict", "predict_one", {"features": EXAMPLE_FEATURES}),
        ("/predict/batch", "predict_many", [{"features": EXAMPLE_FEATURES}]),
    ],
)
def test_unexpected_error_is_a_500_logged_without_trace_or_values(
    settings: Settings,
    artifact: ModelArtifact,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    method: str,
    body: object,
) -> None:
    app = create_app(settings, artifact)
    headers = {API_KEY_HEADER: with_test_key(app, ["predict"])}
    # What a real server answers: the test client would otherwise re-raise the error.
    with TestClient(app, headers=headers, raise_server_exceptions=False) as client:
        monkeypatch.setattr(app.runtime.pipeline, method, _explode)
        with caplog.at_level(logging.INFO, logger="churn_mlops"):
            response = client.post(path, json=body)

    assert response.status_code == 500
    assert LEAKED not in response.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is None
    message = errors[0].getMessage()
    assert message.startswith(f"unhandled RuntimeError on POST {path} (raised at ")
    assert "test_unexpected_errors.py" in message
    assert LEAKED not in message
