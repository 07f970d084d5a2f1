from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.registry import CHALLENGER, LocalRegistry


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
