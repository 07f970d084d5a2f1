"""Reason codes against the `shap` library: the kernel's contributions equal shap's own
path-dependent TreeSHAP for every row of the shipped dataset and for rows with missing values
and unseen categories (treeshap_reference.py says how the reference is built, and the first
test proves that construction on a model shap reads correctly by itself)."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from churn_mlops.data.telco_example import CATEGORICAL_FEATURES, FEATURE_NAMES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.treeshap import TreeExplainer
from tests.unit.model.treeshap_reference import reference_shap, shap

SHAP_TOLERANCE = 1e-6
EXACT = 1e-9
NUMERIC = [i for i, name in enumerate(FEATURE_NAMES) if name not in CATEGORICAL_FEATURES]


def test_the_reference_is_shaps_own_treeshap_on_a_numeric_model(
    artifact: ModelArtifact,
) -> None:
    rows = artifact.parity_rows[::7]  # with missing total_charges among them
    x = rows[:, NUMERIC].astype(np.float64)
    y = np.asarray(artifact.estimator.predict(rows), dtype=int)
    numeric = HistGradientBoostingClassifier(max_iter=40, max_depth=4, random_state=0).fit(x, y)
    assert np.isnan(x).any()

    by_shap = shap.TreeExplainer(numeric, model_output="raw").shap_values(x)
    reference, expected_value = reference_shap(numeric, x)
    explainer = TreeExplainer.from_estimator(numeric)

    assert np.max(np.abs(reference - by_shap)) <= EXACT
    assert np.max(np.abs(explainer.explain(x.astype(np.float32)) - by_shap)) <= SHAP_TOLERANCE
    assert abs(explainer.base_value - expected_value) <= EXACT


def test_contributions_equal_shaps_on_every_row_nulls_and_unseen_categories(
    artifact: ModelArtifact,
) -> None:
    rows = artifact.parity_rows  # every training customer, then nulls and unseen codes
    assert artifact.explainer is not None
    ours = artifact.explainer.explain(rows)

    reference, expected_value = reference_shap(artifact.estimator, rows)

    worst_per_feature = np.max(np.abs(ours - reference), axis=0)
    assert np.all(worst_per_feature <= SHAP_TOLERANCE), dict(
        zip(FEATURE_NAMES, worst_per_feature.tolist(), strict=True)
    )
    assert abs(artifact.explainer.base_value - expected_value) <= EXACT
    raw = np.asarray(artifact.estimator.decision_function(rows), dtype=np.float64)
    assert np.max(np.abs(ours.sum(axis=1) + artifact.explainer.base_value - raw)) <= EXACT
    # The categorical splits matter: shap's own reading of this model (categorical splits as
    # numeric thresholds, features in sklearn's internal order) is not the reference.
    by_shap = shap.TreeExplainer(artifact.estimator, model_output="raw").shap_values(rows[:200])
    assert np.max(np.abs(by_shap - reference[:200])) > SHAP_TOLERANCE
