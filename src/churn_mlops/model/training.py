"""Trains the churn model: a seeded hold-out split, a small cross-validated search over
HistGradientBoostingClassifier settings, a decision threshold, and hold-out metrics."""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
import pydantic
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
)
from sklearn.model_selection import (
    ParameterSampler,
    StratifiedKFold,
    cross_val_predict,
    train_test_split,
)

from churn_mlops.core.model_info import HoldoutMetrics, ModelInfo
from churn_mlops.data import Dataset
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.drift_profile import ReferenceProfile
from churn_mlops.model.features import FeatureEncoder, FloatMatrix
from churn_mlops.model.parity import parity_rows

# Shallow trees: on 4,930 customers they generalise best, and they are cheap to evaluate.
SEARCH_SPACE: dict[str, list[Any]] = {
    "learning_rate": [0.02, 0.03, 0.05, 0.08, 0.1],
    "max_iter": [100, 150, 200, 300],
    "max_leaf_nodes": [4, 6, 8, 12, 16],
    "max_depth": [2, 3, 4, 5],
    "min_samples_leaf": [10, 20, 40, 80],
    "l2_regularization": [0.0, 0.1, 1.0, 3.0],
}

ProgressCallback = Callable[[str, int, int], None]
"""Called as (stage, steps done, steps in the stage) while training runs."""


@dataclass(frozen=True)
class TrainingConfig:
    """How a model is trained; the same config and data always give the same artifact."""

    seed: int = 42
    holdout_fraction: float = 0.2
    cv_folds: int = 5
    search_iterations: int = 16


@dataclass(frozen=True)
class TrainingResult:
    artifact: ModelArtifact
    cv_roc_auc: float
    default_holdout_roc_auc: float


def _estimator(mask: list[bool], seed: int, **params: Any) -> HistGradientBoostingClassifier:
    # No early stopping: its internal validation split would make the tree count depend on it.
    return HistGradientBoostingClassifier(
        categorical_features=mask, early_stopping=False, random_state=seed, **params
    )


def _best_f1_threshold(y_true: npt.NDArray[np.int_], scores: npt.NDArray[np.float64]) -> float:
    precision, recall, thresholds = precision_recall_curve(y_true, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


@dataclass(frozen=True)
class _Split:
    """The seeded hold-out split, encoded by an encoder fitted on the training part only."""

    encoder: FeatureEncoder
    x_train: FloatMatrix
    y_train: npt.NDArray[np.int_]
    x_holdout: FloatMatrix
    y_holdout: npt.NDArray[np.int_]


@dataclass(frozen=True)
class _SearchResult:
    params: dict[str, Any]
    cv_roc_auc: float
    oof_scores: npt.NDArray[np.float64]


def _split(dataset: Dataset, config: TrainingConfig) -> _Split:
    y = np.array(dataset.churned, dtype=np.int_)
    train_idx, holdout_idx = train_test_split(
        np.arange(len(dataset)),
        test_size=config.holdout_fraction,
        stratify=y,
        random_state=config.seed,
    )
    train = dataset.subset(train_idx.tolist())
    holdout = dataset.subset(holdout_idx.tolist())
    encoder = FeatureEncoder.fit(dataset.schema, train.columns)
    return _Split(
        encoder,
        encoder.encode_columns(train.columns),
        y[train_idx],
        encoder.encode_columns(holdout.columns),
        y[holdout_idx],
    )


def _search(split: _Split, config: TrainingConfig, report: ProgressCallback) -> _SearchResult:
    """The candidate with the best cross-validated ROC AUC on the training split."""
    mask = split.encoder.categorical_mask
    folds = StratifiedKFold(n_splits=config.cv_folds, shuffle=True, random_state=config.seed)
    candidates = list(
        ParameterSampler(SEARCH_SPACE, n_iter=config.search_iterations, random_state=config.seed)
    )
    best_params: dict[str, Any] = {}
    best_auc = -1.0
    for done, params in enumerate(candidates):
        report("search", done, len(candidates))
        oof = cross_val_predict(
            _estimator(mask, config.seed, **params),
            split.x_train,
            split.y_train,
            cv=folds,
            method="predict_proba",
        )[:, 1]
        auc = float(roc_auc_score(split.y_train, oof))
        if auc > best_auc:
            best_auc, best_params, best_oof = auc, params, oof
    report("search", len(candidates), len(candidates))
    return _SearchResult(best_params, best_auc, best_oof)


def _holdout_metrics(
    y_holdout: npt.NDArray[np.int_], scores: npt.NDArray[np.float64]
) -> HoldoutMetrics:
    return HoldoutMetrics(
        roc_auc=float(roc_auc_score(y_holdout, scores)),
        pr_auc=float(average_precision_score(y_holdout, scores)),
        log_loss=float(log_loss(y_holdout, scores)),
        brier=float(brier_score_loss(y_holdout, scores)),
    )


def _library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
        "pydantic": pydantic.__version__,
    }


def train_model(
    dataset: Dataset,
    config: TrainingConfig = TrainingConfig(),
    progress: ProgressCallback | None = None,
) -> TrainingResult:
    """Train, tune and evaluate a model on `dataset`; nothing is written to disk."""
    report = progress or (lambda stage, done, total: None)
    split = _split(dataset, config)
    search = _search(split, config, report)
    mask = split.encoder.categorical_mask

    report("fit", 0, 2)
    # The threshold comes from out-of-fold training predictions, so the hold-out stays unseen.
    threshold = _best_f1_threshold(split.y_train, search.oof_scores)
    model = _estimator(mask, config.seed, **search.params).fit(split.x_train, split.y_train)
    default = _estimator(mask, config.seed).fit(split.x_train, split.y_train)
    report("fit", 2, 2)

    scores = model.predict_proba(split.x_holdout)[:, 1]
    info = ModelInfo(
        version="",
        model_sha256="",
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        features=list(dataset.schema.names),
        categorical_features=[n for n in dataset.schema.names if n in dataset.schema.categorical],
        threshold=threshold,
        threshold_method=(
            f"maximum F1 on {config.cv_folds}-fold out-of-fold predictions of the training split"
        ),
        holdout_metrics=_holdout_metrics(split.y_holdout, scores),
        hyperparameters={**search.params, "seed": config.seed, "n_trees": int(model.n_iter_)},
        training_data_sha256=dataset.sha256,
        training_rows=len(split.y_train),
        holdout_rows=len(split.y_holdout),
        library_versions=_library_versions(),
    )
    default_auc = float(
        roc_auc_score(split.y_holdout, default.predict_proba(split.x_holdout)[:, 1])
    )
    # Live drift is measured against the rows the model learnt from and its answers on them.
    profile = ReferenceProfile.build(
        split.x_train, model.predict_proba(split.x_train)[:, 1], split.encoder
    )
    artifact = ModelArtifact.build(
        model,
        split.encoder,
        info,
        schema=dataset.schema,
        parity_rows=parity_rows(split.encoder, split.x_train),
        drift_profile=profile,
    )
    return TrainingResult(artifact, search.cv_roc_auc, default_auc)
