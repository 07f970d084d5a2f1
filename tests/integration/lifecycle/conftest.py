from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.registry import CHALLENGER, LocalRegistry
from churn_mlops.settings import Settings


@pytest.fixture(scope="session")
def challenger_artifact(challenger_artifact_dir: Path) -> ModelArtifact:
    return ModelArtifact.load(challenger_artifact_dir)


@pytest.fixture(scope="session")
def champion_and_challenger_root(
    tmp_path_factory: pytest.TempPathFactory,
    artifact_dir: Path,
    artifact: ModelArtifact,
    challenger_artifact_dir: Path,
) -> Path:
    """A registry whose champion is artifact_dir's model and challenger another trained one."""
    root = tmp_path_factory.mktemp("lifecycle") / "models"
    registry = LocalRegistry(root)
    registry.register(artifact_dir)
    registry.promote(artifact.version)
    challenger = registry.register(challenger_artifact_dir)
    registry.promote(challenger.version, CHALLENGER)
    return root


@pytest.fixture
def lifecycle_registry(champion_and_challenger_root: Path, tmp_path: Path) -> LocalRegistry:
    root = tmp_path / "models"
    shutil.copytree(champion_and_challenger_root, root)
    return LocalRegistry(root)


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def lifecycle_settings(
    migrated_database_url: str, lifecycle_registry: LocalRegistry, tmp_path: Path
) -> SettingsFactory:
    """Settings of an app following `lifecycle_registry`, logging to the test database and
    flushing often; keyword arguments override any of them."""

    def make(**overrides: Any) -> Settings:
        options: dict[str, Any] = {
            "environment": "test",
            "auth_enabled": False,
            "model_registry_dir": lifecycle_registry.root,
            "database_url": migrated_database_url,
            "prediction_log_flush_ms": 20.0,
            "prediction_log_spill_path": tmp_path / "spill" / "predictions.jsonl",
        }
        return Settings(**{**options, **overrides})

    return make
