"""The whole app serving the model trained on the generated non-Telco data
(tests/fixtures/own_data.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from churn_mlops.api.app import create_app
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings
from tests.fixtures.security import api_client, security_settings


@pytest.fixture
def own_settings(own_artifact_dir: Path) -> Settings:
    return Settings(
        model_dir=own_artifact_dir, max_batch_rows=50, environment="test", **security_settings()
    )


@pytest.fixture
def own_client(own_settings: Settings, own_artifact: ModelArtifact) -> Iterator[TestClient]:
    with api_client(create_app(own_settings, own_artifact)) as test_client:
        yield test_client


@pytest.fixture
def slow_path_client(own_settings: Settings, own_artifact: ModelArtifact) -> Iterator[TestClient]:
    """The app with the raw-ASGI fast path off: `/predict` is answered by its FastAPI route."""
    settings = own_settings.model_copy(update={"fast_predict_enabled": False})
    with api_client(create_app(settings, own_artifact)) as test_client:
        yield test_client
