from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from churn_mlops.data import TelcoDataset
from churn_mlops.model.artifact import (
    METADATA_FILE,
    MODEL_FILE,
    ArtifactError,
    ModelArtifact,
)
from churn_mlops.model.training import train_model
from tests.conftest import QUICK_TRAINING


def test_load_gives_back_the_saved_model(
    artifact: ModelArtifact, artifact_dir: Path, dataset: TelcoDataset
) -> None:
    again = ModelArtifact.load(artifact_dir)
    x = again.encoder.encode_columns(dataset.columns)
    np.testing.assert_array_equal(
        again.estimator.predict_proba(x), artifact.estimator.predict_proba(x)
    )
    assert again.info == artifact.info


def test_metadata_records_what_the_issue_names(artifact_dir: Path, dataset: TelcoDataset) -> None:
    metadata = json.loads((artifact_dir / METADATA_FILE).read_text())
    assert metadata["version"].startswith("v")
    assert metadata["training_data_sha256"] == dataset.sha256
    assert set(metadata["holdout_metrics"]) == {"roc_auc", "pr_auc", "log_loss", "brier"}
    assert 0 < metadata["threshold"] < 1
    assert "out-of-fold" in metadata["threshold_method"]
    assert {"scikit-learn", "numpy", "python"} <= set(metadata["library_versions"])
    assert metadata["training_rows"] + metadata["holdout_rows"] == len(dataset)


def test_same_data_and_seed_give_the_same_version(
    artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    again = train_model(dataset, QUICK_TRAINING).artifact
    assert again.version == artifact.version
    assert again.info.created_at  # set, but not part of the version


def test_another_seed_gives_another_version(artifact: ModelArtifact, dataset: TelcoDataset) -> None:
    other = train_model(dataset, QUICK_TRAINING.__class__(seed=7, search_iterations=2, cv_folds=2))
    assert other.artifact.version != artifact.version


def test_load_refuses_a_modified_model_file(artifact_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(artifact_dir, copy)
    with (copy / MODEL_FILE).open("ab") as model_file:
        model_file.write(b"\0")
    with pytest.raises(ArtifactError, match=r"model\.joblib does not match the sha256"):
        ModelArtifact.load(copy)


def test_the_version_ignores_the_thread_count_training_ran_with(
    artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    # The pickled estimator records the thread count of its binning; the version must not.
    with threadpool_limits(limits=1):
        single_threaded = train_model(dataset, QUICK_TRAINING).artifact
    assert single_threaded.version == artifact.version


def test_load_refuses_changed_metadata(artifact_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(artifact_dir, copy)
    metadata = json.loads((copy / METADATA_FILE).read_text())
    metadata["threshold"] = 0.01
    (copy / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(ArtifactError, match="modified"):
        ModelArtifact.load(copy)


def test_load_names_missing_files(tmp_path: Path) -> None:
    missing = r"missing model\.joblib, encoder\.json, metadata\.json"
    with pytest.raises(ArtifactError, match=missing):
        ModelArtifact.load(tmp_path)


def test_save_replaces_an_existing_artifact(artifact: ModelArtifact, tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    artifact.save(target)
    assert not (target / "stale.txt").exists()
    assert ModelArtifact.load(target).version == artifact.version
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
