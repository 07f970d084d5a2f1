"""An app that follows a local registry: champion `v1` (artifact_dir) and a registered `v2`
(the same trees with another threshold), polled every 50 ms."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.registry import LocalRegistry
from churn_mlops.settings import Settings
from tests.fixtures.security import security_settings


@pytest.fixture
def registry(registered_root: Path, tmp_path: Path, artifact: ModelArtifact) -> LocalRegistry:
    root = tmp_path / "models"
    shutil.copytree(registered_root, root)
    registry = LocalRegistry(root)
    registry.promote(artifact.version)
    return registry


@pytest.fixture
def v2(other_artifact_dir: Path) -> str:
    return ModelArtifact.load(other_artifact_dir).version


@pytest.fixture
def registry_settings(registry: LocalRegistry) -> Settings:
    return Settings(
        model_registry_dir=registry.root,
        model_poll_seconds=0.05,
        environment="test",
        **security_settings(),
    )
