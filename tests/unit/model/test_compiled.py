from __future__ import annotations

import io
import json
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import CATEGORICAL_FEATURES, FEATURE_NAMES
from churn_mlops.model.artifact import (
    ENCODER_FILE,
    FOREST_FILE,
    METADATA_FILE,
    ArtifactError,
    ModelArtifact,
    content_version,
)
from churn_mlops.model.compiled import (
    LAYOUT_COMPLETE,
    LAYOUT_GENERAL,
    PARITY_TOLERANCE,
    CompiledForest,
    CompileError,
    ForestFileError,
    ParityError,
    check_parity,
)
from churn_mlops.model.features import FloatMatrix
from churn_mlops.model.forest_layout import _float32_at_most

TOTAL_CHARGES = FEATURE_NAMES.index("total_charges")
CATEGORICAL = [i for i, name in enumerate(FEATURE_NAMES) if name in CATEGORICAL_FEATURES]


@pytest.fixture(scope="module")
def rows(artifact: ModelArtifact, dataset: TelcoDataset) -> FloatMatrix:
    return artifact.encoder.encode_columns(dataset.columns)


def _sklearn(estimator: Any, rows: FloatMatrix) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.asarray(estimator.predict_proba(rows)[:, 1], dtype=np.float64)


def _gap(forest: CompiledForest, estimator: Any, rows: FloatMatrix) -> float:
    return float(np.max(np.abs(forest.predict(rows) - _sklearn(estimator, rows))))


def _perturbed(forest: CompiledForest, delta: float) -> CompiledForest:
    return replace(forest, node_value=forest.node_value + delta)


def _train(rows: FloatMatrix, dataset: TelcoDataset, **params: Any) -> Any:
    mask = [name in CATEGORICAL_FEATURES for name in FEATURE_NAMES]
    model = HistGradientBoostingClassifier(
        categorical_features=mask, early_stopping=False, random_state=0, **params
    )
    return model.fit(rows, np.array(dataset.churned, dtype=np.int_))


def test_probabilities_match_sklearn_over_the_shipped_dataset(
    artifact: ModelArtifact, rows: FloatMatrix
) -> None:
    assert len(rows) == 4930
    assert check_parity(artifact.forest, artifact.estimator, rows) <= PARITY_TOLERANCE
    assert _gap(artifact.forest, artifact.estimator, rows) <= PARITY_TOLERANCE


def test_customers_without_total_charges_match_sklearn(
    artifact: ModelArtifact, rows: FloatMatrix
) -> None:
    missing = rows[np.isnan(rows[:, TOTAL_CHARGES])]
    assert len(missing) == 8
    assert _gap(artifact.forest, artifact.estimator, missing) <= PARITY_TOLERANCE


@pytest.mark.parametrize("value", [np.nan, 99.0, -1.0, 0.5, 1e30], ids=str)
def test_missing_and_unseen_categories_match_sklearn(
    artifact: ModelArtifact, rows: FloatMatrix, value: float
) -> None:
    some = rows[::50]
    for column in CATEGORICAL:
        varied = some.copy()
        varied[:, column] = value
        assert _gap(artifact.forest, artifact.estimator, varied) <= PARITY_TOLERANCE, column
    varied = some.copy()
    varied[:, CATEGORICAL] = value
    varied[:, TOTAL_CHARGES] = np.nan
    assert _gap(artifact.forest, artifact.estimator, varied) <= PARITY_TOLERANCE


def test_numbers_outside_the_training_range_match_sklearn(
    artifact: ModelArtifact, rows: FloatMatrix
) -> None:
    numeric = [i for i in range(len(FEATURE_NAMES)) if i not in CATEGORICAL]
    for value in (-np.inf, -1e30, 0.0, 1e30, np.inf, np.nan):
        varied = rows[::50].copy()
        varied[:, numeric] = value
        assert _gap(artifact.forest, artifact.estimator, varied) <= PARITY_TOLERANCE, value


def test_values_at_float32_neighbours_of_each_threshold_split_like_sklearn(
    artifact: ModelArtifact, rows: FloatMatrix
) -> None:
    estimator = artifact.estimator
    splits = {
        (int(node["feature_idx"]), float(node["num_threshold"]))
        for (predictor,) in estimator._predictors
        for node in predictor.nodes
        if not node["is_leaf"] and not node["is_categorical"]
    }
    # The trees number features with the categorical ones first (sklearn's preprocessor).
    numeric = [i for i in range(len(FEATURE_NAMES)) if i not in CATEGORICAL]
    assert splits
    varied = []
    for feature, threshold in splits:
        below = _float32_at_most(threshold)
        for value in (below, np.nextafter(below, np.float32(np.inf)), np.float32(threshold)):
            row = rows[::700].copy()
            row[:, numeric[feature - len(CATEGORICAL)]] = value
            varied.append(row)
    matrix = np.concatenate(varied)
    # sklearn scores float64 rows; these float32 values convert to float64 exactly.
    expected = _sklearn(estimator, matrix.astype(np.float64))
    assert np.max(np.abs(artifact.forest.predict(matrix) - expected)) <= PARITY_TOLERANCE


@pytest.mark.parametrize(
    "threshold", [0.1, 70.35, 1.5, -2.75, 1e39, -1e39, 3.4028235e38, np.inf, -np.inf, 0.0]
)
def test_float32_threshold_is_the_largest_float32_not_above(threshold: float) -> None:
    rounded = _float32_at_most(threshold)
    assert rounded.dtype == np.float32
    assert float(rounded) <= threshold
    with np.errstate(over="ignore"):
        above = np.nextafter(rounded, np.float32(np.inf))
    assert float(above) > threshold or rounded == np.inf


def test_thresholds_between_float32_values_split_like_sklearn() -> None:
    # Few distinct values: sklearn splits at float64 midpoints, most of which no float32 equals.
    rng = np.random.default_rng(0)
    values = rng.choice(np.linspace(0.1, 3.0, 40), size=(2000, 2)).astype(np.float32)
    labels = (values[:, 0] + values[:, 1] + rng.normal(0, 0.3, 2000) > 3.0).astype(np.int_)
    estimator = HistGradientBoostingClassifier(max_iter=30, max_depth=3, random_state=0)
    estimator.fit(values, labels)
    thresholds = [
        (int(node["feature_idx"]), float(node["num_threshold"]))
        for (predictor,) in estimator._predictors
        for node in predictor.nodes
        if not node["is_leaf"]
    ]
    # Rounding these to the nearest float32 would send some values the wrong way.
    assert any(float(np.float32(t)) > t for _, t in thresholds)
    probes = []
    for feature, threshold in thresholds:
        below = _float32_at_most(threshold)
        for value in (below, np.nextafter(below, np.float32(np.inf)), np.float32(threshold)):
            probe = values[:20].copy()
            probe[:, feature] = value
            probes.append(probe)
    matrix = np.concatenate(probes)
    forest = CompiledForest.from_estimator(estimator)
    expected = _sklearn(estimator, matrix.astype(np.float64))
    assert np.max(np.abs(forest.predict(matrix) - expected)) <= PARITY_TOLERANCE


def test_one_row_and_batch_agree_exactly(artifact: ModelArtifact, rows: FloatMatrix) -> None:
    some = rows[::7]
    one_by_one = [artifact.forest.predict_one(row) for row in some]
    assert artifact.forest.predict(some).tolist() == one_by_one
    assert artifact.forest.predict(some[:2]).tolist() == one_by_one[:2]  # the walked path


def test_predict_accepts_views_and_refuses_other_dtypes(
    artifact: ModelArtifact, rows: FloatMatrix
) -> None:
    expected = artifact.forest.predict(np.ascontiguousarray(rows[::3]))
    np.testing.assert_array_equal(artifact.forest.predict(rows[::3]), expected)
    read_only = np.ascontiguousarray(rows[::3])
    read_only.flags.writeable = False
    np.testing.assert_array_equal(artifact.forest.predict(read_only), expected)
    assert artifact.forest.predict(rows[:0]).shape == (0,)
    with pytest.raises(ValueError, match="float32 matrix"):
        artifact.forest.predict(rows.astype(np.float64))
    with pytest.raises(ValueError, match="float32 row"):
        artifact.forest.predict_one(rows[:2])


@pytest.mark.parametrize(
    ("params", "layout"),
    [
        ({"max_iter": 20, "max_depth": 1}, LAYOUT_COMPLETE),
        ({"max_iter": 20, "max_depth": 5, "max_leaf_nodes": 16}, LAYOUT_COMPLETE),
        ({"max_iter": 20, "max_depth": None, "max_leaf_nodes": 31}, LAYOUT_GENERAL),
    ],
    ids=["depth-1", "depth-5", "unbounded"],
)
def test_other_tree_shapes_match_sklearn(
    dataset: TelcoDataset, rows: FloatMatrix, params: dict[str, Any], layout: int
) -> None:
    estimator = _train(rows, dataset, **params)
    forest = CompiledForest.from_estimator(estimator)
    assert forest.layout == layout
    varied = rows.copy()
    varied[::3, CATEGORICAL[::2]] = np.nan
    varied[::5, TOTAL_CHARGES] = np.nan
    assert check_parity(forest, estimator, varied) <= PARITY_TOLERANCE
    again = CompiledForest.from_bytes(forest.to_bytes())
    np.testing.assert_array_equal(again.predict(varied), forest.predict(varied))


def test_a_model_without_categorical_features_matches_sklearn(
    dataset: TelcoDataset, rows: FloatMatrix
) -> None:
    estimator = HistGradientBoostingClassifier(max_iter=20, random_state=0)
    estimator.fit(rows, np.array(dataset.churned, dtype=np.int_))
    forest = CompiledForest.from_estimator(estimator)
    assert check_parity(forest, estimator, rows) <= PARITY_TOLERANCE


def test_refuses_regressors_and_multiclass_models(dataset: TelcoDataset, rows: FloatMatrix) -> None:
    target = np.arange(len(rows)) % 3
    with pytest.raises(CompileError, match="HistGradientBoostingClassifier"):
        CompiledForest.from_estimator(HistGradientBoostingRegressor(max_iter=2).fit(rows, target))
    with pytest.raises(CompileError, match="binary"):
        CompiledForest.from_estimator(HistGradientBoostingClassifier(max_iter=2).fit(rows, target))
    with pytest.raises(CompileError, match="not fitted"):
        CompiledForest.from_estimator(HistGradientBoostingClassifier())


def test_npz_round_trip_gives_the_same_forest(
    artifact: ModelArtifact, rows: FloatMatrix, tmp_path: Path
) -> None:
    path = tmp_path / "forest.npz"
    artifact.forest.to_npz(path)
    again = CompiledForest.from_npz(path)
    np.testing.assert_array_equal(again.predict(rows), artifact.forest.predict(rows))
    assert again.to_bytes() == path.read_bytes()
    with np.load(path, allow_pickle=False) as archive:
        assert "node_threshold" in archive.files
        assert archive["node_threshold"].dtype == np.float32


def test_same_estimator_gives_identical_bytes(artifact: ModelArtifact, artifact_dir: Path) -> None:
    rebuilt = CompiledForest.from_estimator(artifact.estimator).to_bytes()
    assert rebuilt == (artifact_dir / FOREST_FILE).read_bytes() == artifact.forest_bytes
    with zipfile.ZipFile(io.BytesIO(rebuilt)) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_from_bytes_refuses_malformed_files(artifact: ModelArtifact) -> None:
    with pytest.raises(ForestFileError, match="unreadable"):
        CompiledForest.from_bytes(b"not a zip")
    with pytest.raises(ForestFileError, match="outside the decision row"):
        replace(artifact.forest, node_column=artifact.forest.node_column + 1000)
    buffer = io.BytesIO()
    np.savez(buffer, header=np.array([1, 2, 3]))
    with pytest.raises(ForestFileError, match="expected arrays"):
        CompiledForest.from_bytes(buffer.getvalue())


def test_check_parity_refuses_a_forest_past_the_tolerance(
    artifact: ModelArtifact, rows: FloatMatrix
) -> None:
    with pytest.raises(ParityError, match="differs from the estimator"):
        check_parity(_perturbed(artifact.forest, 1e-3), artifact.estimator, rows)
    assert check_parity(_perturbed(artifact.forest, 1e-9), artifact.estimator, rows) < 1e-6


def _rewrite_forest(directory: Path, forest: CompiledForest) -> None:
    """Replace the forest and re-stamp the version, as a consistent but wrong artifact."""
    forest.to_npz(directory / FOREST_FILE)
    metadata = json.loads((directory / METADATA_FILE).read_text())
    metadata["version"] = content_version(
        (directory / FOREST_FILE).read_bytes(),
        json.loads((directory / ENCODER_FILE).read_text()),
        metadata,
    )
    (directory / METADATA_FILE).write_text(json.dumps(metadata))


def test_load_refuses_a_forest_that_disagrees_with_the_model(
    artifact: ModelArtifact, artifact_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(artifact_dir, copy)
    _rewrite_forest(copy, _perturbed(artifact.forest, 1e-3))
    with pytest.raises(ArtifactError, match="compiled forest does not match the model"):
        ModelArtifact.load(copy)


def test_load_accepts_a_restamped_but_equal_forest(
    artifact: ModelArtifact, artifact_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(artifact_dir, copy)
    _rewrite_forest(copy, artifact.forest)
    assert ModelArtifact.load(copy).version == artifact.version


def test_load_refuses_a_modified_forest_file(artifact_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(artifact_dir, copy)
    with (copy / FOREST_FILE).open("ab") as forest_file:
        forest_file.write(b"\0")
    with pytest.raises(ArtifactError, match="modified or is incomplete"):
        ModelArtifact.load(copy)


def test_scoring_starts_no_threads(artifact: ModelArtifact, rows: FloatMatrix) -> None:
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        pytest.skip("counts threads through /proc")
    before = len(list(tasks.iterdir()))
    artifact.forest.predict(rows)
    artifact.forest.predict_one(rows[0])
    CompiledForest.from_bytes(artifact.forest_bytes).predict(rows[:100])
    assert len(list(tasks.iterdir())) == before
