from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.registry import LocalRegistry


@pytest.fixture(scope="session")
def other_artifact_dir(tmp_path_factory: pytest.TempPathFactory, artifact: ModelArtifact) -> Path:
    """A second valid artifact with another version than artifact_dir: the same trees with
    another threshold (built in half a second, where training another takes seconds)."""
    directory = tmp_path_factory.mktemp("other-artifact") / "model"
    info = artifact.info.model_copy(update={"threshold": artifact.threshold / 2})
    ModelArtifact.build(artifact.estimator, artifact.encoder, info).save(directory)
    return directory


@pytest.fixture(scope="session")
def registered_root(
    tmp_path_factory: pytest.TempPathFactory, artifact_dir: Path, other_artifact_dir: Path
) -> Path:
    """A registry holding both artifacts, registered once (a registration loads and verifies the
    artifact, about 0.6 s); tests get a copy of it."""
    root = tmp_path_factory.mktemp("registered") / "models"
    registry = LocalRegistry(root)
    registry.register(artifact_dir)
    registry.register(other_artifact_dir)
    return root


@pytest.fixture
def registry(registered_root: Path, tmp_path: Path) -> LocalRegistry:
    root = tmp_path / "models"
    shutil.copytree(registered_root, root)
    return LocalRegistry(root)
