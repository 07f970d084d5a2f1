"""The TreeSHAP kernel on the compiled forest: exact (contributions plus the base value are the
model's log-odds), the same for one row as in a batch, and its file checked on load."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import CATEGORICAL_FEATURES, FEATURE_NAMES
from churn_mlops.model.artifact import (
    EXPLAINER_FILE,
    METADATA_FILE,
    ArtifactError,
    ModelArtifact,
    content_version,
)
from churn_mlops.model.features import FloatMatrix
from churn_mlops.model.treeshap import ExplainerFileError, TreeExplainer
from churn_mlops.model.treeshap_plan import MAX_TABLE_SPLITS

EXACT = 1e-9


@pytest.fixture(scope="module")
def rows(artifact: ModelArtifact) -> FloatMatrix:
    """Every customer of the shipped dataset, then some with values missing and codes unseen."""
    return artifact.parity_rows


@pytest.fixture(scope="module")
def explainer(artifact: ModelArtifact) -> TreeExplainer:
    assert artifact.explainer is not None
    return artifact.explainer


def _raw(estimator: Any, rows: FloatMatrix) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.asarray(estimator.decision_function(rows), dtype=np.float64)


def test_contributions_plus_base_value_are_the_models_log_odds(
    artifact: ModelArtifact, explainer: TreeExplainer, rows: FloatMatrix
) -> None:
    contributions = explainer.explain(rows)

    assert contributions.shape == rows.shape
    total = contributions.sum(axis=1) + explainer.base_value
    assert np.max(np.abs(total - _raw(artifact.estimator, rows))) <= EXACT
    # Not trivially so: most features move most rows.
    assert np.count_nonzero(contributions) > rows.size // 2


def test_one_row_is_explained_as_in_a_batch(explainer: TreeExplainer, rows: FloatMatrix) -> None:
    batch = explainer.explain(rows[:600])
    for index in (0, 1, 255, 256, 257, 599):
        single = explainer.explain(rows[index : index + 1])
        np.testing.assert_array_equal(single[0], batch[index])


def test_a_feature_no_split_reads_contributes_nothing(
    dataset: TelcoDataset, artifact: ModelArtifact
) -> None:
    mask = [name in CATEGORICAL_FEATURES for name in FEATURE_NAMES]
    x = artifact.encoder.encode_columns(dataset.columns)
    tenure = FEATURE_NAMES.index("tenure")
    y = (x[:, tenure] < 12).astype(int)  # labels from tenure: few features get a split
    estimator = HistGradientBoostingClassifier(
        max_iter=5, max_depth=2, categorical_features=mask, random_state=0
    ).fit(x, y)
    explainer = TreeExplainer.from_estimator(estimator)
    contributions = explainer.explain(x[:200])

    read = set(explainer.node_player[explainer.children[:, 0] >= 0].tolist())
    unread = [i for i in range(len(FEATURE_NAMES)) if i not in read]
    assert tenure in read
    assert unread
    assert np.all(contributions[:, unread] == 0.0)
    assert np.all(contributions[:, tenure] != 0.0)


def test_trees_too_large_for_one_table_take_the_per_leaf_path(
    dataset: TelcoDataset, artifact: ModelArtifact
) -> None:
    mask = [name in CATEGORICAL_FEATURES for name in FEATURE_NAMES]
    x = artifact.encoder.encode_columns(dataset.columns)
    y = np.asarray(dataset.churned, dtype=int)
    estimator = HistGradientBoostingClassifier(
        max_iter=20, max_leaf_nodes=24, max_depth=None, categorical_features=mask, random_state=0
    ).fit(x, y)
    explainer = TreeExplainer.from_estimator(estimator)
    assert max(len(p[0].nodes) // 2 for p in estimator._predictors) > MAX_TABLE_SPLITS
    rows = artifact.parity_rows

    total = explainer.explain(rows).sum(axis=1) + explainer.base_value

    assert np.max(np.abs(total - _raw(estimator, rows))) <= EXACT


def test_the_file_round_trips_to_the_same_bytes_and_contributions(
    artifact: ModelArtifact, explainer: TreeExplainer, rows: FloatMatrix
) -> None:
    data = explainer.to_bytes()
    again = TreeExplainer.from_bytes(data)

    assert TreeExplainer.from_estimator(artifact.estimator).to_bytes() == data
    assert again.to_bytes() == data
    np.testing.assert_array_equal(again.explain(rows[:100]), explainer.explain(rows[:100]))
    assert again.base_value == explainer.base_value


def _rewritten(data: bytes, **changes: np.ndarray[Any, Any]) -> bytes:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays.update(changes)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_malformed_files_are_refused(explainer: TreeExplainer) -> None:
    data = explainer.to_bytes()
    children = explainer.children.copy()
    children[0] = (0, 0)  # the root is its own child: a cycle
    far = explainer.children.copy()
    far[0, 0] = 10_000
    players = explainer.node_player.copy()
    players[0] = 99
    bad = {
        "not a zip": b"not an explainer",
        "a cycle": _rewritten(data, children=children),
        "a child outside its tree": _rewritten(data, children=far),
        "a player outside the row": _rewritten(data, node_player=players),
        "another format version": _rewritten(data, header=np.array([99, 19], dtype=np.int64)),
        "a wrong dtype": _rewritten(data, node_cover=explainer.node_cover.astype(np.float32)),
    }
    for reason, payload in bad.items():
        with pytest.raises(ExplainerFileError):  # noqa: PT012 - the message names the case
            TreeExplainer.from_bytes(payload)
            pytest.fail(f"accepted {reason}")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert "node_cover.npy" in archive.namelist()


def test_a_model_made_before_explainers_loads_without_one(
    artifact: ModelArtifact, tmp_path: Path
) -> None:
    info = artifact.info.model_copy(update={"explainer_sha256": None})
    version = content_version(
        artifact.forest_bytes, artifact.encoder.to_dict(), info.model_dump(mode="json")
    )
    metadata = info.model_copy(update={"version": version}).model_dump(mode="json")
    del metadata["explainer_sha256"]  # as such artifacts were written
    old = tmp_path / "old"
    artifact.save(old)
    (old / EXPLAINER_FILE).unlink()
    (old / METADATA_FILE).write_text(json.dumps(metadata))

    loaded = ModelArtifact.load(old)

    assert loaded.version == version
    assert loaded.explainer is None


def test_a_changed_explainer_file_refuses_the_artifact(
    artifact: ModelArtifact, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    artifact.save(copy)
    assert artifact.explainer is not None
    changed = artifact.explainer.node_value.copy()
    changed[-1] += 1.0
    (copy / EXPLAINER_FILE).write_bytes(
        _rewritten(artifact.explainer.to_bytes(), node_value=changed)
    )

    with pytest.raises(ArtifactError, match=r"explainer\.npz does not match"):
        ModelArtifact.load(copy)
    (copy / EXPLAINER_FILE).unlink()
    with pytest.raises(ArtifactError, match=r"missing explainer\.npz"):
        ModelArtifact.load(copy)
