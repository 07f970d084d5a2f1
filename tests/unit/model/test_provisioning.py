"""Which artifact `serve` serves when no directory is named: the registry's champion, made on
the first run from the artifact in the model directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from churn_mlops.data import SHIPPED_DATASET
from churn_mlops.model.provisioning import champion_model_dir
from churn_mlops.model.registry import CHAMPION, LocalRegistry

pytestmark = pytest.mark.timeout(120)


def test_serves_the_champion_when_there_is_one(
    registry: LocalRegistry, other_artifact_dir: Path, tmp_path: Path
) -> None:
    champion = registry.register(other_artifact_dir)
    registry.promote(champion.version)
    untouched = tmp_path / "model"
    assert champion_model_dir(registry, untouched, SHIPPED_DATASET) == champion.path
    assert not untouched.exists()


def test_first_run_registers_the_model_directory_and_makes_it_the_champion(
    artifact_dir: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(artifact_dir, model_dir)
    registry = LocalRegistry(tmp_path / "models")
    served = champion_model_dir(registry, model_dir, SHIPPED_DATASET)
    champion = registry.resolve(CHAMPION)
    assert champion is not None
    assert served == champion.path == tmp_path / "models" / champion.version
    assert [v.version for v in registry.versions()] == [champion.version]
    # The next start serves the same champion without registering again.
    assert champion_model_dir(registry, model_dir, SHIPPED_DATASET) == served
    assert len(registry.history(CHAMPION)) == 1


@pytest.mark.slow
def test_train_registers_and_promotes_what_it_trains(tmp_path: Path) -> None:
    env = {**os.environ, "CHURN_MODEL_REGISTRY_DIR": str(tmp_path / "models"), "COLUMNS": "300"}
    command = [sys.executable, "-m", "churn_mlops.cli", "train", "--out", str(tmp_path / "m")]
    options = ["--search-iterations", "2", "--cv-folds", "2", "--promote"]
    completed = subprocess.run(
        [*command, *options], env=env, capture_output=True, text=True, timeout=110, check=False
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    registry = LocalRegistry(tmp_path / "models")
    champion = registry.resolve(CHAMPION)
    assert champion is not None
    assert f"Registered {champion.version}" in completed.stderr
    assert "as the champion" in completed.stderr
