from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from churn_mlops.api.app import ChurnAPI, create_app
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.security.authenticator import MemoryKeySource
from churn_mlops.settings import Settings
from tests.fixtures.security import TEST_PEPPER, security_settings

AppFactory = Callable[..., tuple[ChurnAPI, MemoryKeySource]]


@pytest.fixture
def make_app(artifact_dir: Path, artifact: ModelArtifact) -> AppFactory:
    """An app (lifespan not started) whose API keys live in memory; settings overridable."""

    def make(**overrides: Any) -> tuple[ChurnAPI, MemoryKeySource]:
        options: dict[str, Any] = {
            "model_dir": artifact_dir,
            "environment": "test",
            "database_url": "",
            "max_batch_rows": 50,
            **security_settings(),
            **overrides,
        }
        app = create_app(Settings(**options), artifact)
        keys = MemoryKeySource(TEST_PEPPER.encode())
        app.use_keys(keys)
        return app, keys

    return make


@pytest.fixture
def app_and_keys(make_app: AppFactory) -> Iterator[tuple[TestClient, MemoryKeySource]]:
    app, keys = make_app()
    with TestClient(app) as client:
        yield client, keys
