from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.mlflow_registry import MlflowRegistry
from tests.fixtures.mlflow_server import MlflowServer, running_mlflow_server

if TYPE_CHECKING:
    from mlflow import MlflowClient


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server


@pytest.fixture(scope="session")
def mlflow_client(mlflow_server: MlflowServer) -> MlflowClient:
    """A client of its own, to check what the registry wrote as any MLflow user would."""
    from mlflow import MlflowClient  # imported once the server fixture has required MLflow

    return MlflowClient(mlflow_server.url)


@pytest.fixture(scope="session")
def other_artifact_dir(tmp_path_factory: pytest.TempPathFactory, artifact: ModelArtifact) -> Path:
    """A second valid artifact with another version than artifact_dir: the same trees with
    another threshold (built in half a second, where training another takes seconds)."""
    directory = tmp_path_factory.mktemp("other-artifact") / "model"
    info = artifact.info.model_copy(update={"threshold": artifact.threshold / 2})
    artifact.rebuilt(info).save(directory)
    return directory


def unique_model_name() -> str:
    """A registered model no other test uses: the tests share one server."""
    return f"churn-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class SeededModel:
    """Both artifacts registered once (a registration verifies the artifact and uploads it)."""

    name: str
    cache_dir: Path


@pytest.fixture(scope="session")
def seeded_model(
    mlflow_server: MlflowServer,
    artifact_dir: Path,
    other_artifact_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> SeededModel:
    cache_dir = tmp_path_factory.mktemp("seeded-cache")
    seeded = MlflowRegistry(mlflow_server.url, unique_model_name(), cache_dir=cache_dir)
    seeded.register(artifact_dir)
    seeded.register(other_artifact_dir)
    return SeededModel(seeded.model_name, cache_dir)


@pytest.fixture
def registry(
    mlflow_server: MlflowServer,
    mlflow_client: MlflowClient,
    seeded_model: SeededModel,
    tmp_path: Path,
) -> MlflowRegistry:
    """A registered model of its own holding both versions (MLflow copies of the seeded ones:
    same runs, same tags) and a copy of their download cache."""
    cache_dir = tmp_path / "mlflow-cache"
    shutil.copytree(seeded_model.cache_dir, cache_dir)
    registry = MlflowRegistry(mlflow_server.url, unique_model_name(), cache_dir=cache_dir)
    for number in ("1", "2"):
        mlflow_client.copy_model_version(
            f"models:/{seeded_model.name}/{number}", registry.model_name
        )
    return registry
