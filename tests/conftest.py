from __future__ import annotations

import os
from pathlib import Path

import pytest

from churn_mlops.data import TelcoDataset, load_telco_csv
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.training import TrainingConfig, train_model

pytest_plugins = ["tests.fixtures.redis_fixtures", "tests.fixtures.postgres"]

# Tests opt in to a database (tests/fixtures/postgres.py): by default the app runs without one,
# and no test writes the default var/churn.db. Servers started by tests inherit this.
os.environ["CHURN_DATABASE_URL"] = ""

# A two-candidate search on two folds: a real model in about two seconds, for tests that need
# any trained artifact. Model quality is tested with the default config in test_training.
QUICK_TRAINING = TrainingConfig(search_iterations=2, cv_folds=2)


@pytest.fixture(scope="session")
def dataset() -> TelcoDataset:
    return load_telco_csv()


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory, dataset: TelcoDataset) -> Path:
    directory = tmp_path_factory.mktemp("artifact") / "model"
    train_model(dataset, QUICK_TRAINING).artifact.save(directory)
    return directory


@pytest.fixture(scope="session")
def artifact(artifact_dir: Path) -> ModelArtifact:
    return ModelArtifact.load(artifact_dir)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
