"""The reference for the TreeSHAP tests: the `shap` library's own TreeSHAP (its C extension),
on a model whose every row takes scikit-learn's own path.

shap reads a HistGradientBoostingClassifier's categorical splits as numeric thresholds (its
`_tree.py` takes `num_threshold` for every node), and its features in sklearn's internal order
(categoricals first). So the reference hands shap a dict model instead: the estimator's nodes,
counts and values, with each split's feature the *original* input column. Path-dependent
TreeSHAP depends on a row only through the direction it takes at each node; for each row the
thresholds are set so that an all-zero input goes the way sklearn sends that row at every node
(threshold +1: left, -1: right). The directions come from sklearn's own predictor code, run on
one split at a time.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

with warnings.catch_warnings():
    # shap imports its plots, whose matplotlib colormap call matplotlib plans to deprecate.
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    import shap


def original_columns(estimator: Any) -> npt.NDArray[np.intp]:
    """Original input column of each of sklearn's internal feature indices."""
    categorical = getattr(estimator, "is_categorical_", None)
    if categorical is None or getattr(estimator, "_preprocessor", None) is None:
        return np.arange(estimator.n_features_in_)
    categorical = np.asarray(categorical, dtype=bool)
    return np.concatenate([np.flatnonzero(categorical), np.flatnonzero(~categorical)])


def sklearn_directions(estimator: Any, rows: npt.NDArray[Any]) -> list[npt.NDArray[np.bool_]]:
    """Per tree, (n_rows, n_nodes): whether sklearn sends each row right at each split."""
    preprocessor = getattr(estimator, "_preprocessor", None)
    x = preprocessor.transform(rows) if preprocessor is not None else np.asarray(rows, np.float64)
    known, f_idx_map = estimator._bin_mapper.make_known_categories_bitsets()
    out = []
    for (predictor,) in estimator._predictors:
        nodes = predictor.nodes
        directions = np.zeros((x.shape[0], nodes.shape[0]), dtype=bool)
        for n in np.flatnonzero(~nodes["is_leaf"].astype(bool)):
            single = np.zeros(3, dtype=nodes.dtype)
            single[0] = nodes[n]
            single[0]["left"], single[0]["right"] = 1, 2
            single[1]["is_leaf"] = single[2]["is_leaf"] = 1
            single[1]["value"], single[2]["value"] = 0.0, 1.0
            split = TreePredictor(
                single, predictor.binned_left_cat_bitsets, predictor.raw_left_cat_bitsets
            )
            directions[:, n] = split.predict(x, known, f_idx_map, 1) > 0.5
        out.append(directions)
    return out


def dict_model(estimator: Any) -> dict[str, Any]:
    """The estimator as shap's dict model, features as original columns, thresholds 0."""
    columns = original_columns(estimator)
    trees = []
    for (predictor,) in estimator._predictors:
        nodes = predictor.nodes
        leaf = nodes["is_leaf"].astype(bool)
        trees.append(
            {
                "children_left": np.where(leaf, -1, nodes["left"]).astype(np.int64),
                "children_right": np.where(leaf, -1, nodes["right"]).astype(np.int64),
                "children_default": np.where(leaf, -1, nodes["left"]).astype(np.int64),
                "features": np.where(leaf, -2, columns[nodes["feature_idx"]]).astype(np.int64),
                "thresholds": np.zeros(nodes.shape[0], dtype=np.float64),
                "values": nodes["value"].astype(np.float64).reshape(-1, 1),
                "node_sample_weight": nodes["count"].astype(np.float64),
            }
        )
    baseline = float(np.asarray(estimator._baseline_prediction).reshape(-1)[0])
    return {"trees": trees, "base_offset": baseline, "tree_output": "log_odds"}


def reference_shap(estimator: Any, rows: npt.NDArray[Any]) -> tuple[npt.NDArray[np.float64], float]:
    """shap's path-dependent TreeSHAP values (n_rows, n_features) for sklearn's paths of
    `rows`, and shap's expected value."""
    explainer = shap.TreeExplainer(dict_model(estimator), model_output="raw")
    directions = sklearn_directions(estimator, rows)
    thresholds = explainer.model.thresholds
    zero = np.zeros((1, estimator.n_features_in_), dtype=np.float64)
    out = np.empty((rows.shape[0], estimator.n_features_in_), dtype=np.float64)
    for r in range(rows.shape[0]):
        for t, tree in enumerate(directions):
            thresholds[t, : tree.shape[1]] = np.where(tree[r], -1.0, 1.0)
        out[r] = explainer.shap_values(zero, check_additivity=False)[0]
    return out, float(np.asarray(explainer.expected_value).reshape(-1)[0])
