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
def settings(artifact_dir: Path) -> Settings:
    return Settings(
        model_dir=artifact_dir, max_batch_rows=50, environment="test", **security_settings()
    )


@pytest.fixture
def client(settings: Settings, artifact: ModelArtifact) -> Iterator[TestClient]:
    with api_client(create_app(settings, artifact)) as test_client:
        yield test_client
