"""The MLflow round trip with the real commands against a real `mlflow server`: `train
--promote` logs a run and registers the champion, `models promote` makes another version the
champion, and `serve` (in a directory with nothing cached) downloads and serves it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from benchmarks.servers import free_port
from churn_mlops.data import TelcoDataset
from churn_mlops.model.artifact import ModelArtifact
from tests.fixtures.mlflow_server import MlflowServer
from tests.fixtures.requests import prediction_bodies
from tests.fixtures.serve import CLI, stop, wait_ready
from tests.integration.model.conftest import unique_model_name

if TYPE_CHECKING:
    from mlflow import MlflowClient

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]


@dataclass(frozen=True)
class Project:
    """Where the commands run (their var/ is there) and the environment that points them at
    the MLflow server."""

    directory: Path
    env: dict[str, str]
    model_name: str

    def run(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [CLI, *arguments],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result


def said(result: subprocess.CompletedProcess[str]) -> str:
    """What a command printed on stderr, with rich's line wrapping undone."""
    return " ".join(result.stderr.split())


@pytest.fixture(scope="module")
def project(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Project:
    model_name = unique_model_name()
    env = {
        **os.environ,
        "CHURN_MLFLOW_TRACKING_URI": mlflow_server.url,
        "CHURN_MLFLOW_MODEL_NAME": model_name,
        "CHURN_ENVIRONMENT": "test",
        "CHURN_AUTH_ENABLED": "false",
        "CHURN_DATABASE_URL": "",
    }
    return Project(tmp_path_factory.mktemp("mlflow-project"), env, model_name)


@pytest.fixture(scope="module")
def trained(project: Project) -> tuple[ModelArtifact, str]:
    """`churn-mlops train --promote`, quick settings: the artifact it wrote and what it said."""
    out = project.directory / "model"
    result = project.run(
        "train", "--out", str(out), "--search-iterations", "2", "--cv-folds", "2", "--promote"
    )
    return ModelArtifact.load(out), said(result)


def test_train_logs_the_run_in_mlflow(
    project: Project, trained: tuple[ModelArtifact, str], mlflow_client: MlflowClient
) -> None:
    artifact, _ = trained
    [model_version] = mlflow_client.search_model_versions(f"name='{project.model_name}'")
    assert model_version.tags["churn_content_version"] == artifact.version
    assert model_version.run_id is not None
    run = mlflow_client.get_run(model_version.run_id)
    assert run.data.params["learning_rate"] == str(artifact.info.hyperparameters["learning_rate"])
    assert run.data.params["n_trees"] == str(artifact.info.hyperparameters["n_trees"])
    roc_auc = artifact.info.holdout_metrics.roc_auc
    assert run.data.metrics["holdout_roc_auc"] == pytest.approx(roc_auc)
    assert run.data.metrics["decision_threshold"] == pytest.approx(artifact.threshold)
    assert 0.5 < run.data.metrics["cv_roc_auc"] < 1.0  # the training's cross-validated figure
    assert run.data.tags["training_data_sha256"] == artifact.info.training_data_sha256
    assert run.data.tags["source_artifact_dir"] == str(project.directory / "model")


def test_train_promote_makes_it_the_mlflow_champion(
    project: Project, trained: tuple[ModelArtifact, str], mlflow_client: MlflowClient
) -> None:
    artifact, output = trained
    champion = mlflow_client.get_model_version_by_alias(project.model_name, "champion")
    assert champion.tags["churn_content_version"] == artifact.version
    assert (
        f"Registered {artifact.version} in MLflow {project.env['CHURN_MLFLOW_TRACKING_URI']}"
        in (output)
    )
    assert output.endswith("as the champion.")


@pytest.fixture(scope="module")
def promoted(
    project: Project, trained: tuple[ModelArtifact, str], other_artifact_dir: Path
) -> tuple[str, str]:
    """Another version registered and promoted with `churn-mlops models`: its version, and what
    `promote` said."""
    registered = project.run("models", "register", str(other_artifact_dir))
    version = registered.stdout.strip().splitlines()[-1]
    return version, said(project.run("models", "promote", version))


def test_models_promote_replaces_the_champion(
    project: Project, trained: tuple[ModelArtifact, str], promoted: tuple[str, str]
) -> None:
    version, output = promoted
    assert output == f"champion is now {version} (was {trained[0].version})"


@pytest.fixture(scope="module")
def server(
    project: Project, promoted: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`churn-mlops serve`, one worker, started where nothing is cached: the champion comes
    from MLflow."""
    elsewhere = tmp_path_factory.mktemp("mlflow-serve")
    port = free_port()
    log = elsewhere / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [CLI, "serve", "--port", str(port), "--workers", "1"],
            cwd=elsewhere,
            env=project.env,
            stdout=subprocess.DEVNULL,
            stderr=output,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, process, timeout=90, exit_details=lambda: log.read_text()[-3000:])
        yield base_url
    finally:
        stop(process)


def test_serve_serves_the_promoted_version(server: str, promoted: tuple[str, str]) -> None:
    response = httpx.get(f"{server}/model", timeout=5)
    assert response.status_code == 200
    assert response.json()["version"] == promoted[0]


def test_predictions_come_from_the_promoted_version(
    server: str, promoted: tuple[str, str], dataset: TelcoDataset
) -> None:
    [body] = prediction_bodies(dataset, 1, start=7)
    response = httpx.post(f"{server}/predict", json=body, timeout=5)
    assert response.status_code == 200
    assert response.json()["model_version"] == promoted[0]
