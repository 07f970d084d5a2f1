from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from churn_mlops.api.app import create_app
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings


@pytest.fixture
def settings(artifact_dir: Path) -> Settings:
    # Authentication and the database have tests of their own; these look at what every request
    # records, whoever sends it.
    return Settings(
        model_dir=artifact_dir,
        environment="test",
        auth_enabled=False,
        database_url="",
        max_batch_rows=50,
    )


@pytest.fixture
def client(settings: Settings, artifact: ModelArtifact) -> Iterator[TestClient]:
    with TestClient(create_app(settings, artifact)) as test_client:
        yield test_client
