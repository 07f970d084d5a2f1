"""Reason codes: why the model gives a customer its churn probability.

Each answer asked for with `"explain": true` gets `reasons`: the features that moved its
log-odds most, by the magnitude of their exact TreeSHAP contribution (model/treeshap.py), each
with the value the caller sent and whether it raises or lowers the churn risk. Contributions
are in log-odds: `base_value` plus every feature's contribution is `log_odds`, the model's raw
score, whose sigmoid is `churn_probability`. Only the `top_k` largest are listed
(`CHURN_EXPLAIN_TOP_K`); a feature whose contribution is exactly 0 is never a reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from churn_mlops.core.errors import Conflict
from churn_mlops.model.features import FloatMatrix
from churn_mlops.model.treeshap import TreeExplainer

NO_EXPLAINER = (
    "The served model {version} has no explanation data (it was trained before reason codes "
    "existed): retrain it with `churn-mlops train` to get reasons, or leave out `explain`."
)

DEFAULT_TOP_K = 5
"""CHURN_EXPLAIN_TOP_K's default: reasons listed per answer."""

FeatureValues = Sequence[Any]
"""One customer's feature values as sent, in the model's feature order."""


class ReasonCodes:
    """Turns encoded rows and the values they were encoded from into `reasons` documents."""

    __slots__ = ("_names", "base_value", "explainer", "top_k", "version")

    def __init__(
        self,
        explainer: TreeExplainer | None,
        top_k: int,
        version: str,
        names: Sequence[str] | None = None,
    ) -> None:
        """`names`: the model's features in its column order (its schema's); None: the
        shipped Telco example's, which artifacts made before schema.json were trained on."""
        self.explainer = explainer
        self.top_k = top_k
        self.version = version
        self.base_value = None if explainer is None else explainer.base_value
        if names is None:
            from churn_mlops.prediction.strict_parser import shipped_example_schema

            names = shipped_example_schema().names
        self._names = tuple(names)

    def require(self) -> TreeExplainer:
        """The explainer; Conflict (409) for a model made before explainers existed."""
        if self.explainer is None:
            raise Conflict(NO_EXPLAINER.format(version=self.version))
        return self.explainer

    def of_rows(self, rows: FloatMatrix, values: Sequence[FeatureValues]) -> list[dict[str, Any]]:
        """The reasons of each encoded row of `rows`, whose values as sent are `values`."""
        contributions = self.require().explain(rows)
        order = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, : self.top_k]
        top = contributions[np.arange(len(contributions))[:, None], order]
        log_odds = (contributions.sum(axis=1) + self.base_value).tolist()
        return [
            self._document(row_values, picked, largest, raw)
            for row_values, picked, largest, raw in zip(
                values, order.tolist(), top.tolist(), log_odds, strict=True
            )
        ]

    def of_row(self, row: FloatMatrix, values: FeatureValues) -> dict[str, Any]:
        """The reasons of one encoded (1, n_features) row, as `of_rows` gives them: the same
        sums and the same stable order, without numpy's per-call costs on 19 numbers."""
        contributions = self.require().explain(row)
        raw = float(contributions.sum(axis=1)[0] + self.base_value)
        every = contributions[0].tolist()
        picked = sorted(range(len(every)), key=lambda i: -abs(every[i]))[: self.top_k]
        return self._document(values, picked, [every[i] for i in picked], raw)

    def _document(
        self, values: FeatureValues, picked: list[int], largest: list[float], raw: float
    ) -> dict[str, Any]:
        names = self._names
        features = [
            {
                "feature": names[index],
                "value": values[index],
                "contribution": contribution,
                "direction": "raises" if contribution > 0.0 else "lowers",
            }
            for index, contribution in zip(picked, largest, strict=True)
            if contribution != 0.0  # sorted by magnitude: only the last ones can be 0
        ]
        return {"base_value": self.base_value, "log_odds": raw, "features": features}

    def add_to(
        self,
        answers: Sequence[dict[str, Any]],
        rows: FloatMatrix,
        explained: Sequence[FeatureValues | None],
    ) -> None:
        """Add `reasons` to each answer whose row asked for them (its `explained` not None);
        `answers`, `rows` and `explained` are in the same order."""
        asked = [(i, values) for i, values in enumerate(explained) if values is not None]
        if not asked:
            return
        indices = [i for i, _ in asked]
        picked = rows if len(asked) == len(rows) else rows[np.asarray(indices, dtype=np.intp)]
        documents = self.of_rows(picked, [values for _, values in asked])
        for index, document in zip(indices, documents, strict=True):
            answers[index]["reasons"] = document
