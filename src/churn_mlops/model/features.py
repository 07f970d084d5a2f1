"""Turns customers into the model's float32 feature rows, without pandas.

Categorical values become their index in a vocabulary learnt from the training data (the
gradient-boosting model's native categorical support splits on those codes); numbers and
booleans pass through; a missing value or a category never seen in training becomes NaN, which
the model routes like any missing value. The columns are the feature schema's, in its order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from churn_mlops.core.schema import FeatureSchema

FloatMatrix = npt.NDArray[np.float32]


class EncoderError(ValueError):
    """An encoder document or a column handed to the encoder is malformed."""


class FeatureEncoder:
    """Maps feature values to float32 columns in `feature_names` order."""

    __slots__ = ("_codes", "_sorted_codes", "_sorted_vocab", "feature_names", "vocabularies")

    def __init__(
        self, feature_names: Sequence[str], vocabularies: Mapping[str, Sequence[str]]
    ) -> None:
        self.feature_names: tuple[str, ...] = tuple(feature_names)
        if unknown := sorted(set(vocabularies) - set(self.feature_names)):
            raise EncoderError(f"vocabularies of features the encoder has not: {unknown}")
        self.vocabularies: dict[str, tuple[str, ...]] = {
            name: tuple(vocabularies[name]) for name in self.feature_names if name in vocabularies
        }
        # Per-value lookups for single rows; sorted arrays for vectorised batches.
        self._codes = {
            name: {value: float(code) for code, value in enumerate(vocab)}
            for name, vocab in self.vocabularies.items()
        }
        self._sorted_vocab: dict[str, npt.NDArray[np.str_]] = {}
        self._sorted_codes: dict[str, FloatMatrix] = {}
        for name, vocab in self.vocabularies.items():
            order = np.argsort(np.array(vocab, dtype=np.str_), kind="stable")
            self._sorted_vocab[name] = np.array(vocab, dtype=np.str_)[order]
            self._sorted_codes[name] = order.astype(np.float32)

    @classmethod
    def fit(cls, schema: FeatureSchema, columns: Mapping[str, Sequence[Any]]) -> FeatureEncoder:
        """Learn each categorical feature's vocabulary (sorted) from training columns."""
        return cls(
            schema.names,
            {
                name: sorted({value for value in columns[name] if value is not None})
                for name in schema.names
                if name in schema.categorical
            },
        )

    @property
    def categorical_mask(self) -> list[bool]:
        """Which of the encoded columns are categorical, for the model."""
        return [name in self.vocabularies for name in self.feature_names]

    def encode_row(self, features: Mapping[str, Any]) -> FloatMatrix:
        """One customer as a (1, n_features) float32 row."""
        row = np.empty((1, len(self.feature_names)), dtype=np.float32)
        out = row[0]
        codes = self._codes
        for i, name in enumerate(self.feature_names):
            value = features[name]
            lookup = codes.get(name)
            if lookup is not None:
                out[i] = lookup.get(value, np.nan)
            else:
                out[i] = np.nan if value is None else value
        return row

    def encode_columns(self, columns: Mapping[str, Sequence[Any]]) -> FloatMatrix:
        """Many customers given as one sequence per feature; one vectorised pass per column."""
        names = self.feature_names
        lengths = {len(columns[name]) for name in names}
        if len(lengths) != 1:
            raise EncoderError("all feature columns must have the same length")
        n_rows = lengths.pop()
        matrix = np.empty((n_rows, len(names)), dtype=np.float32)
        for i, name in enumerate(names):
            values = columns[name]
            if name in self._sorted_vocab:
                matrix[:, i] = self._encode_categorical(name, values)
            else:
                # None becomes NaN in a float64 conversion; then one rounding to float32.
                matrix[:, i] = np.asarray(values, dtype=np.float64)
        return matrix

    def _encode_categorical(self, name: str, values: Sequence[Any]) -> FloatMatrix:
        vocab = self._sorted_vocab[name]
        if None in values:
            # Missing: "" is no category (a category is 1 to 64 characters), so it reads NaN.
            values = ["" if value is None else value for value in values]
        given = np.asarray(values, dtype=np.str_)
        position = np.searchsorted(vocab, given)
        position = np.minimum(position, len(vocab) - 1)
        found = vocab[position] == given
        return np.where(found, self._sorted_codes[name][position], np.float32(np.nan))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description from which `from_dict` rebuilds the same encoder."""
        return {
            "features": list(self.feature_names),
            "categorical": {name: list(vocab) for name, vocab in self.vocabularies.items()},
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], schema: FeatureSchema) -> FeatureEncoder:
        """Rebuild an encoder saved by `to_dict`; refuse one made for other features than the
        schema's, or whose categorical features are not the schema's."""
        if list(document.get("features", ())) != list(schema.names):
            raise EncoderError("encoder was saved for a different feature list")
        categorical = document.get("categorical")
        if not isinstance(categorical, Mapping):
            raise EncoderError("encoder document has no categorical vocabularies")
        if set(categorical) != schema.categorical:
            raise EncoderError("encoder's categorical features are not the schema's")
        return cls(schema.names, categorical)
