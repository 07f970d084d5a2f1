"""Scores encoded customers with a loaded artifact's compiled forest."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.features import FloatMatrix

Probabilities = npt.NDArray[np.float64]


class ChurnPredictor:
    """The encoder, the model and the decision threshold of one artifact, ready to score."""

    __slots__ = ("_forest", "encoder", "explainer", "threshold", "version")

    def __init__(self, artifact: ModelArtifact) -> None:
        # The compiled forest, not the estimator: same probabilities (checked when the artifact
        # loads), without sklearn's per-call validation and thread pool.
        self._forest = artifact.forest
        self.encoder = artifact.encoder
        self.threshold = artifact.threshold
        self.version = artifact.version
        # TreeSHAP for reason codes; None for a model made before explainers existed.
        self.explainer = artifact.explainer

    def probabilities(self, rows: FloatMatrix) -> Probabilities:
        """Churn probability of each encoded (n, features) float32 row, shape (n,)."""
        return self._forest.predict(rows)
