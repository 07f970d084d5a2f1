"""Scores encoded customers with a loaded artifact's compiled forest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.features import FEATURE_NAMES, FloatMatrix

Probabilities = npt.NDArray[np.float64]


class ChurnPredictor:
    """The encoder, the model and the decision threshold of one artifact, ready to score."""

    __slots__ = ("_forest", "encoder", "threshold", "version")

    def __init__(self, artifact: ModelArtifact) -> None:
        # The compiled forest, not the estimator: same probabilities (checked when the artifact
        # loads), without sklearn's per-call validation and thread pool.
        self._forest = artifact.forest
        self.encoder = artifact.encoder
        self.threshold = artifact.threshold
        self.version = artifact.version

    def probabilities(self, rows: FloatMatrix) -> Probabilities:
        """Churn probability of each encoded (n, features) float32 row, shape (n,)."""
        return self._forest.predict(rows)

    def probability_one(self, row: FloatMatrix) -> float:
        """Churn probability of one encoded float32 row of shape (features,)."""
        return self._forest.predict_one(row)

    def score_one(self, features: Mapping[str, Any]) -> float:
        """Churn probability of one customer's features."""
        return self._forest.predict_one(self.encoder.encode_row(features)[0])

    def score_many(self, features: Sequence[Mapping[str, Any]]) -> Probabilities:
        """Churn probabilities of many customers, in one model call."""
        columns = {name: [row[name] for row in features] for name in FEATURE_NAMES}
        return self.probabilities(self.encoder.encode_columns(columns))
