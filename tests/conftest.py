from __future__ import annotations

import os

# One OpenMP thread for every model fit of the suite (this process and the servers and CLI
# runs it starts, which inherit it), set before scikit-learn loads its OpenMP runtime: on a
# machine as busy as a test run makes it, two spinning OpenMP threads per fit made a quick
# training 25x slower (44 s against 1.7 s with one thread, load average 7). Serving limits
# its own threads (CHURN_MODEL_THREADS) and is unaffected.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import pytest

from churn_mlops.data import TelcoDataset, load_telco_csv
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.registry import LocalRegistry
from churn_mlops.model.training import TrainingConfig, train_model

pytest_plugins = [
    "tests.fixtures.redis_fixtures",
    "tests.fixtures.postgres",
    "tests.fixtures.own_data",
]

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


@pytest.fixture(scope="session")
def other_artifact_dir(tmp_path_factory: pytest.TempPathFactory, artifact: ModelArtifact) -> Path:
    """A second valid artifact with another version than artifact_dir: the same trees with
    another threshold (built in half a second, where training another takes seconds)."""
    directory = tmp_path_factory.mktemp("other-artifact") / "model"
    info = artifact.info.model_copy(update={"threshold": artifact.threshold / 2})
    artifact.rebuilt(info).save(directory)
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


@pytest.fixture(scope="session")
def challenger_artifact_dir(
    tmp_path_factory: pytest.TempPathFactory, dataset: TelcoDataset
) -> Path:
    """Another trained model (another seed): its probabilities differ from artifact_dir's."""
    directory = tmp_path_factory.mktemp("challenger-artifact") / "model"
    config = TrainingConfig(search_iterations=2, cv_folds=2, seed=7)
    train_model(dataset, config).artifact.save(directory)
    return directory


# Tests that bound elapsed time (a fault answered within its budget, a cache entry expiring, an
# idle connection closed, a server draining under load) or load the machine on purpose. `make
# test` runs them alone after the rest, which runs on two processes: beside another test, a 50 ms
# bound would measure the neighbour. Tests that only wait until something holds, with a deadline
# of seconds, are not in it. A directory ends with "/".
TIMED = (
    "tests/faults/",
    "tests/load/",
    "tests/e2e/cluster/test_rehearsal.py",
    "tests/e2e/test_idle_connections.py",
    "tests/e2e/test_model_swap_under_load.py",
    "tests/e2e/test_sigterm_under_load.py",
    "tests/integration/db/test_read_pool.py",
    "tests/integration/security/test_shared_ratelimit.py",
    "tests/integration/security/test_token_revocation.py",
    "tests/unit/cache/test_redis_store.py",
    "tests/unit/security/test_authenticator.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = config.rootpath
    for item in items:
        if item.path.relative_to(root).as_posix().startswith(TIMED):
            item.add_marker(pytest.mark.timed)
