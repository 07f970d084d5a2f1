"""What a trained model is: the metadata its artifact carries and the service reports."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class HoldoutMetrics(BaseModel):
    """Quality of the model on customers it was not trained on."""

    roc_auc: float
    pr_auc: float
    log_loss: float
    brier: float


class ModelInfo(BaseModel):
    """What is being served: the artifact's metadata."""

    version: str
    created_at: str
    model_sha256: str = Field(description="sha256 of the pickled estimator, model.joblib.")
    features: list[str]
    categorical_features: list[str]
    threshold: float
    threshold_method: str
    holdout_metrics: HoldoutMetrics
    hyperparameters: dict[str, Any]
    training_data_sha256: str
    training_rows: int
    holdout_rows: int
    library_versions: dict[str, str]
    parity_sha256: str | None = Field(
        default=None,
        description="sha256 of parity.npz, probe rows from the training data and the "
        "estimator's probabilities on them, which a load checks the compiled forest against "
        "without unpickling the estimator (parity.npy, probabilities on the Telco rows, in older "
        "artifacts; absent in those made before either, checked against the estimator).",
    )
    drift_profile_sha256: str | None = Field(
        default=None,
        description="sha256 of drift_profile.json, the training rows' reference profile that "
        "live drift is measured against (absent in artifacts made before it existed, which "
        "are served with drift monitoring off).",
    )
    explainer_sha256: str | None = Field(
        default=None,
        description="sha256 of explainer.npz, the trees' arrays that reason codes (TreeSHAP) are "
        "computed from (absent in artifacts made before it existed, which answer no reasons).",
    )
    schema_sha256: str | None = Field(
        default=None,
        description="sha256 of schema.json, the feature schema the model was trained on and "
        "requests are validated against (absent in artifacts made before it existed, which "
        "read the shipped Telco features).",
    )
