"""The reference profile a model's drift is measured against, built from its training rows.

Every feature, as the model sees it (the encoder's float32 column), is cut into bins, and the
training rows' proportion in each bin is stored; so is the distribution of the model's predicted
probabilities on those rows. Live traffic (the serving workers' windows) and the offline report
count rows into the same bins and compare with the population stability index.

Bins, and why:

- **Numeric features** (and the predicted probability): interior edges at the training
  column's deciles, duplicates dropped (tenure and senior_citizen have few distinct values), and
  edges at or above the column's maximum dropped too, so that no bin is empty by construction.
  Bin `i` holds the values in `(edges[i-1], edges[i]]`: a value is counted in the bin of the
  number of edges below it. The last bin holds missing values (NaN: a missing total_charges).
- **Categorical features**: one bin per category code of the encoder's vocabulary, then one
  for everything else (a category unseen in training or missing, both NaN once encoded).

The same counting is written twice: `FeatureBins.bin_counts` in numpy (the offline report, the
tests) and `ReferenceProfile.add_counts`, one compiled pass over a batch and every feature, for
the serving workers; a test holds them equal.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from churn_mlops.core.native import kernel
from churn_mlops.model.features import FeatureEncoder, FloatMatrix

DRIFT_PROFILE_FILE = "drift_profile.json"
PROFILE_FORMAT = 1
PREDICTION = "prediction"
"""The name the predicted probability's bins go by."""
DEFAULT_BINS = 10
PSI_EPSILON = 1e-4

FeatureKind = Literal["numeric", "categorical"]
Counts = npt.NDArray[np.int64]

_NUMERIC, _CATEGORICAL = 0, 1


class DriftProfileError(ValueError):
    """A profile document is malformed or does not fit the rows given to it."""


def population_stability_index(
    expected: Sequence[float] | npt.NDArray[np.float64],
    actual_counts: Sequence[int] | npt.NDArray[np.integer[Any]],
    epsilon: float = PSI_EPSILON,
) -> float:
    """PSI = sum over bins of (a - e) * ln(a / e), with `a` the actual and `e` the expected
    proportion in each bin.

    A bin empty on either side would make the logarithm infinite, so both proportions are
    floored at `epsilon` (1e-4 by default: a bin that one side never fills then adds at most
    about `p * ln(p / 1e-4)`, e.g. 0.046 for p = 1 %, instead of infinity). Proportions are not
    renormalised after the floor, as in the usual definition. No rows at all give 0.
    """
    counts = np.asarray(actual_counts, dtype=np.float64)
    reference = np.asarray(expected, dtype=np.float64)
    if counts.shape != reference.shape:
        raise DriftProfileError(
            f"{counts.shape[0]} counts for {reference.shape[0]} expected proportions"
        )
    total = counts.sum()
    if total <= 0:
        return 0.0
    actual = np.maximum(counts / total, epsilon)
    floored = np.maximum(reference, epsilon)
    return float(np.sum((actual - floored) * np.log(actual / floored)))


@dataclass(frozen=True)
class FeatureBins:
    """One feature's bins and the training rows' proportion in each."""

    name: str
    kind: FeatureKind
    edges: tuple[float, ...] = ()
    """Numeric: the interior edges, ascending; value bins are `len(edges) + 1`, then missing."""
    categories: tuple[str, ...] = ()
    """Categorical: the vocabulary in code order; one bin each, then unseen or missing."""
    expected: tuple[float, ...] = ()
    """The training proportion in each bin (they sum to 1)."""

    @property
    def n_bins(self) -> int:
        if self.kind == "numeric":
            return len(self.edges) + 2
        return len(self.categories) + 1

    @property
    def labels(self) -> tuple[str, ...]:
        """A readable name per bin, for reports."""
        if self.kind == "categorical":
            return (*self.categories, "unseen or missing")
        bounds = ("-inf", *(f"{edge:g}" for edge in self.edges), "inf")
        intervals = tuple(f"({low}, {high}]" for low, high in itertools.pairwise(bounds))
        return (*intervals, "missing")

    def bin_index(self, column: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.intp]:
        """Each encoded value's bin."""
        values = np.asarray(column, dtype=np.float64)
        if self.kind == "numeric":
            index = np.searchsorted(np.asarray(self.edges, dtype=np.float64), values, side="left")
            index[np.isnan(values)] = len(self.edges) + 1
            return index.astype(np.intp)
        size = len(self.categories)
        known = (values >= 0) & (values < size) & (values == np.floor(values))
        return np.where(known, values, size).astype(np.intp)

    def bin_counts(self, column: npt.NDArray[np.floating[Any]]) -> Counts:
        """How many of the encoded values fall in each bin."""
        return np.bincount(self.bin_index(column), minlength=self.n_bins).astype(np.int64)

    def psi(self, counts: npt.NDArray[np.integer[Any]], epsilon: float = PSI_EPSILON) -> float:
        """The population stability index of these counts against the training proportions."""
        return population_stability_index(self.expected, counts, epsilon)

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "numeric":
            document["edges"] = list(self.edges)
        else:
            document["categories"] = list(self.categories)
        document["expected"] = list(self.expected)
        return document

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> FeatureBins:
        kind = document.get("kind")
        if kind not in ("numeric", "categorical"):
            raise DriftProfileError(f"unknown bin kind {kind!r}")
        bins = cls(
            name=str(document["name"]),
            kind=kind,
            edges=tuple(float(edge) for edge in document.get("edges", ())),
            categories=tuple(str(category) for category in document.get("categories", ())),
            expected=tuple(float(share) for share in document["expected"]),
        )
        if len(bins.expected) != bins.n_bins:
            raise DriftProfileError(
                f"{bins.name}: {len(bins.expected)} proportions for {bins.n_bins} bins"
            )
        if any(b <= a for a, b in itertools.pairwise(bins.edges)):
            raise DriftProfileError(f"{bins.name}: edges are not strictly ascending")
        return bins

    @classmethod
    def numeric(cls, name: str, column: npt.NDArray[np.floating[Any]], bins: int) -> FeatureBins:
        """Decile (or `bins`-quantile) edges of the column's present values."""
        values = np.asarray(column, dtype=np.float64)
        present = values[~np.isnan(values)]
        edges: tuple[float, ...] = ()
        if len(present):
            quantiles = np.quantile(present, np.arange(1, bins) / bins)
            edges = tuple(float(e) for e in np.unique(quantiles) if e < present.max())
        return cls._with_proportions(cls(name, "numeric", edges=edges), values)

    @classmethod
    def categorical(
        cls, name: str, column: npt.NDArray[np.floating[Any]], categories: Sequence[str]
    ) -> FeatureBins:
        return cls._with_proportions(cls(name, "categorical", categories=tuple(categories)), column)

    @classmethod
    def _with_proportions(
        cls, bins: FeatureBins, column: npt.NDArray[np.floating[Any]]
    ) -> FeatureBins:
        counts = bins.bin_counts(column)
        total = max(int(counts.sum()), 1)
        expected = tuple(float(count) / total for count in counts.tolist())
        return cls(bins.name, bins.kind, bins.edges, bins.categories, expected)


@dataclass(frozen=True)
class _Layout:
    """Every column's bins flattened for the compiled counter: per column (features, then the
    prediction) its kind, its size (edges or categories), where its edges start and where its
    bins start in one flat counts vector."""

    columns: npt.NDArray[np.int64]
    edges: npt.NDArray[np.float64]
    offsets: tuple[int, ...]
    n_bins: int


@dataclass(frozen=True)
class ReferenceProfile:
    """Per-feature bins of the training rows and the bins of the training predictions."""

    features: tuple[FeatureBins, ...]
    prediction: FeatureBins
    rows: int = 0
    """How many training rows the proportions come from."""

    @classmethod
    def build(
        cls,
        rows: FloatMatrix,
        probabilities: npt.NDArray[np.floating[Any]],
        encoder: FeatureEncoder,
        *,
        bins: int = DEFAULT_BINS,
    ) -> ReferenceProfile:
        """The profile of encoded training `rows` (in the encoder's feature order) and the model's
        predicted probabilities on them."""
        names = encoder.feature_names
        if rows.ndim != 2 or rows.shape[1] != len(names):
            raise DriftProfileError(f"rows must have {len(names)} columns, not {rows.shape}")
        if len(probabilities) != len(rows):
            raise DriftProfileError("one probability per row is needed")
        features = tuple(
            FeatureBins.categorical(name, rows[:, i], encoder.vocabularies[name])
            if name in encoder.vocabularies
            else FeatureBins.numeric(name, rows[:, i], bins)
            for i, name in enumerate(names)
        )
        prediction = FeatureBins.numeric(PREDICTION, np.asarray(probabilities), bins)
        return cls(features, prediction, len(rows))

    # --- the compiled counter of the serving workers ----------------------------------------

    @cached_property
    def _layout(self) -> _Layout:
        columns: list[tuple[int, int, int, int]] = []
        edges: list[float] = []
        offsets: list[int] = []
        start = 0
        for bins in (*self.features, self.prediction):
            numeric = bins.kind == "numeric"
            size = len(bins.edges) if numeric else len(bins.categories)
            columns.append((_NUMERIC if numeric else _CATEGORICAL, size, len(edges), start))
            edges.extend(bins.edges)
            offsets.append(start)
            start += bins.n_bins
        return _Layout(
            np.asarray(columns, dtype=np.int64).reshape(-1, 4),
            np.asarray(edges, dtype=np.float64),
            tuple(offsets),
            start,
        )

    @property
    def n_bins(self) -> int:
        """The length of a flat counts vector: every feature's bins, then the prediction's."""
        return self._layout.n_bins

    def add_counts(
        self,
        counts: npt.NDArray[np.int64],
        rows: FloatMatrix,
        probabilities: npt.NDArray[np.floating[Any]],
        slot: int = 0,
    ) -> None:
        """Add the bins of `rows` and their probabilities to `counts[slot]` (a 2-d array of
        flat counts vectors), in one compiled pass."""
        layout = self._layout
        if counts.dtype != np.int64 or counts.ndim != 2 or not counts.flags.c_contiguous:
            raise ValueError("counts must be a C-contiguous 2-d int64 array")  # the kernel's type
        _add_bin_counts(
            counts,
            int(slot),
            np.ascontiguousarray(rows, dtype=np.float32),
            np.ascontiguousarray(probabilities, dtype=np.float64),
            layout.columns,
            layout.edges,
        )

    def split_counts(self, flat: npt.NDArray[np.int64]) -> list[Counts]:
        """A flat counts vector cut into one counts array per feature, then the prediction's."""
        layout = self._layout
        bounds = (*layout.offsets, layout.n_bins)
        return [flat[low:high] for low, high in itertools.pairwise(bounds)]

    def psi(self, flat: npt.NDArray[np.int64]) -> tuple[dict[str, float], float]:
        """Each feature's PSI and the prediction's, for a flat counts vector."""
        *per_feature, prediction = self.split_counts(flat)
        features = {
            bins.name: bins.psi(counts)
            for bins, counts in zip(self.features, per_feature, strict=True)
        }
        return features, self.prediction.psi(prediction)

    # --- the artifact file ---------------------------------------------------------------

    def to_json(self) -> bytes:
        document = {
            "format": PROFILE_FORMAT,
            "rows": self.rows,
            "features": [bins.to_dict() for bins in self.features],
            "prediction": self.prediction.to_dict(),
        }
        return json.dumps(document, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ReferenceProfile:
        try:
            document = json.loads(data)
            if document.get("format") != PROFILE_FORMAT:
                raise DriftProfileError(f"unknown profile format {document.get('format')!r}")
            features = tuple(FeatureBins.from_dict(item) for item in document["features"])
            prediction = FeatureBins.from_dict(document["prediction"])
            rows = int(document.get("rows", 0))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise DriftProfileError(f"unreadable drift profile: {error}") from None
        if prediction.kind != "numeric" or not all(math.isfinite(e) for e in prediction.edges):
            raise DriftProfileError("drift profile's prediction bins are not numeric")
        return cls(features, prediction, rows)


@kernel()
def _bin_of(value: float, kind: int, size: int, edges: Any, start: int) -> int:
    if kind == _CATEGORICAL:
        if value >= 0.0 and value < size and math.floor(value) == value:
            return int(value)
        return size  # unseen or missing (NaN fails every comparison)
    if value != value:
        return size + 1  # missing
    index = 0
    while index < size and edges[start + index] < value:
        index += 1
    return index


@kernel("void(i8[:, ::1], i8, f4[:, ::1], f8[::1], i8[:, ::1], f8[::1])")
def _add_bin_counts(
    counts: Any, slot: int, rows: Any, probabilities: Any, columns: Any, edges: Any
) -> None:
    n_features = columns.shape[0] - 1
    for row in range(rows.shape[0]):
        for j in range(n_features):
            kind, size, start, offset = columns[j, 0], columns[j, 1], columns[j, 2], columns[j, 3]
            counts[slot, offset + _bin_of(rows[row, j], kind, size, edges, start)] += 1
        kind, size, start, offset = (
            columns[n_features, 0],
            columns[n_features, 1],
            columns[n_features, 2],
            columns[n_features, 3],
        )
        counts[slot, offset + _bin_of(probabilities[row], kind, size, edges, start)] += 1
