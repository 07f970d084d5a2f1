from __future__ import annotations

import hashlib
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
    PARITY_FILE,
    SCHEMA_FILE,
    ArtifactError,
    ModelArtifact,
    content_version,
)
from churn_mlops.model.parity import parity_bytes, read_parity
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


def test_load_checks_the_forest_against_stored_probabilities_without_the_estimator(
    artifact_dir: Path,
) -> None:
    loaded = ModelArtifact.load(artifact_dir)
    assert loaded.info.parity_sha256 is not None
    assert "estimator" not in loaded.__dict__  # never unpickled by the load
    assert (artifact_dir / PARITY_FILE).is_file()


def test_load_refuses_modified_stored_probabilities(artifact_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(artifact_dir, copy)
    rows, probabilities = read_parity((copy / PARITY_FILE).read_bytes())
    (copy / PARITY_FILE).write_bytes(parity_bytes(rows, probabilities + 0.01))
    with pytest.raises(ArtifactError, match=r"parity\.npz does not match the sha256"):
        ModelArtifact.load(copy)


def test_load_refuses_a_forest_that_disagrees_with_the_stored_probabilities(
    artifact: ModelArtifact, tmp_path: Path
) -> None:
    # Probabilities re-hashed into a consistent artifact (as a forger or a bug would): the
    # forest no longer matches them and the load says so.
    rows, probabilities = read_parity(artifact.parity_bytes or b"")
    forged_parity = parity_bytes(rows, probabilities + 0.01)
    info = artifact.info.model_copy(
        update={"parity_sha256": hashlib.sha256(forged_parity).hexdigest()}
    )
    version = content_version(
        artifact.forest_bytes, artifact.encoder.to_dict(), info.model_dump(mode="json")
    )
    forged = ModelArtifact(
        artifact.encoder,
        info.model_copy(update={"version": version}),
        artifact.model_bytes,
        artifact.forest,
        artifact.forest_bytes,
        forged_parity,
        drift_profile_bytes=artifact.drift_profile_bytes,
        explainer_bytes=artifact.explainer_bytes,
        schema_bytes=artifact.schema_bytes,
    )
    with pytest.raises(ArtifactError, match="does not match the model"):
        ModelArtifact.load(forged.save(tmp_path / "forged"))


def test_an_artifact_made_before_stored_probabilities_loads_with_its_version(
    artifact: ModelArtifact, tmp_path: Path
) -> None:
    info = artifact.info.model_copy(update={"parity_sha256": None})
    version = content_version(
        artifact.forest_bytes, artifact.encoder.to_dict(), info.model_dump(mode="json")
    )
    metadata = info.model_copy(update={"version": version}).model_dump(mode="json")
    del metadata["parity_sha256"]  # as such artifacts were written
    old = tmp_path / "old"
    artifact.save(old)
    (old / PARITY_FILE).unlink()
    (old / METADATA_FILE).write_text(json.dumps(metadata))

    loaded = ModelArtifact.load(old)

    assert loaded.version == version
    assert loaded.parity_bytes is None
    assert "estimator" in loaded.__dict__  # checked against the estimator instead


def test_load_refuses_a_drift_profile_made_for_other_features(
    artifact: ModelArtifact, tmp_path: Path
) -> None:
    document = json.loads(artifact.drift_profile_bytes or b"{}")
    document["features"][0]["name"] = "shoe_size"
    profile = json.dumps(document).encode()
    info = artifact.info.model_copy(
        update={"drift_profile_sha256": hashlib.sha256(profile).hexdigest()}
    )
    version = content_version(
        artifact.forest_bytes, artifact.encoder.to_dict(), info.model_dump(mode="json")
    )
    forged = ModelArtifact(
        artifact.encoder,
        info.model_copy(update={"version": version}),
        artifact.model_bytes,
        artifact.forest,
        artifact.forest_bytes,
        artifact.parity_bytes,
        drift_profile_bytes=profile,
        explainer_bytes=artifact.explainer_bytes,
        schema_bytes=artifact.schema_bytes,
    )
    with pytest.raises(ArtifactError, match="drift profile was made for other features"):
        ModelArtifact.load(forged.save(tmp_path / "forged"))


def test_the_schema_travels_in_the_artifact_and_its_hash_in_the_version(
    artifact: ModelArtifact, artifact_dir: Path, tmp_path: Path
) -> None:
    stored = (artifact_dir / SCHEMA_FILE).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == artifact.info.schema_sha256
    assert ModelArtifact.load(artifact_dir).schema == artifact.schema
    copy = tmp_path / "model"
    shutil.copytree(artifact_dir, copy)
    document = json.loads(stored)
    document["features"][1]["description"] = "changed"
    (copy / SCHEMA_FILE).write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match=r"schema\.json does not match the sha256"):
        ModelArtifact.load(copy)
