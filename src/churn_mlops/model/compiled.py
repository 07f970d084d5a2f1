"""A compiled float32 evaluator for a binary HistGradientBoostingClassifier.

`CompiledForest.from_estimator` exports the fitted trees into flat numpy arrays
(`forest_layout`) that small numba kernels (`forest_kernels`) evaluate on one thread, without
sklearn's per-call input preprocessing (an internal ColumnTransformer and OrdinalEncoder, most
of its one-row time) and without its OpenMP pool (which makes small predictions many times
slower, scikit-learn issue #30662). Figures, and the command that measures them:
docs/performance.md, "Fast model".

Every row takes sklearn's path (thresholds are rounded for float32 inputs, categories and
missing values follow sklearn's rules), and leaf values are added in sklearn's order, so the
raw scores are sklearn's own sums; only the final sigmoid may differ from scipy's in the last
bit. `check_parity` and `check_probabilities` hold a forest to the estimator's probabilities.

The file format is a zip of `.npy` arrays written with fixed timestamps, so the same estimator
always gives the same bytes (the artifact's version hashes them); it loads without pickle, and
its arrays are bounds-checked on load because the kernels do not check indices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from churn_mlops.model import forest_kernels
from churn_mlops.model.forest_kernels import (
    CATEGORICAL_COLUMN,
    IS_NAN_COLUMN,
    LAYOUT_COMPLETE,
    LAYOUT_GENERAL,
    NUMERIC_COLUMN,
    WALK_BELOW_ROWS,
    kernel_input,
)
from churn_mlops.model.forest_layout import MAX_COMPLETE_DEPTH, export_estimator
from churn_mlops.model.forest_layout import (
    CompileError as CompileError,  # re-exported: what from_estimator raises
)
from churn_mlops.model.npz_file import npz_bytes, read_npz

FloatMatrix = npt.NDArray[np.float32]
Probabilities = npt.NDArray[np.float64]

FORMAT_VERSION = 1

PARITY_TOLERANCE = 1e-5


class ForestFileError(ValueError):
    """A forest file is malformed, of another format version, or its arrays are inconsistent."""


class ParityError(RuntimeError):
    """The compiled forest and the estimator disagree on some rows beyond the tolerance."""


# Arrays of the forest file; the first two hold the scalar fields.
_FILE_ONLY = frozenset({"header", "base"})
_ARRAY_DTYPES: dict[str, type[np.generic]] = {
    "header": np.int64,
    "base": np.float64,
    "columns": np.int32,
    "fills": np.float32,
    "tables": np.float32,
    "slots": np.int32,
    "category_values": np.float64,
    "trees": np.int32,
    "node_column": np.int32,
    "node_threshold": np.float32,
    "children": np.int32,
    "node_value": np.float64,
}


@dataclass(frozen=True, eq=False)
class CompiledForest:
    """A binary HGB classifier as flat arrays, with numba kernels that score float32 rows.

    Decision-row columns: `columns` holds (kind, source, table offset) per column, `fills` the
    NaN replacement of numeric columns, `tables` the 0/1 go-right value per category code (one
    past the last for unknown and NaN), `slots` (input column, first, count) of the sorted
    known `category_values` of each categorical input.

    Complete layout: `node_column` and `node_threshold` hold 2**depth - 1 nodes per tree in
    breadth-first order, `node_value` 2**depth leaves per tree; `trees` and `children` are
    empty. General layout: nodes of all trees one after another, `children` their (left,
    right), a leaf its own child, and `trees` each tree's (root, depth).
    """

    n_features: int
    layout: int
    depth: int
    base: float
    columns: npt.NDArray[np.int32]
    fills: npt.NDArray[np.float32]
    tables: npt.NDArray[np.float32]
    slots: npt.NDArray[np.int32]
    category_values: npt.NDArray[np.float64]
    trees: npt.NDArray[np.int32]
    node_column: npt.NDArray[np.int32]
    node_threshold: npt.NDArray[np.float32]
    children: npt.NDArray[np.int32]
    node_value: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        # One dtype and memory layout per array whatever built the forest: the kernels are
        # compiled for exactly these types, once per process.
        for name, dtype in _ARRAY_DTYPES.items():
            if name not in _FILE_ONLY:
                array = np.require(getattr(self, name), dtype=dtype, requirements=["C", "W"])
                object.__setattr__(self, name, array)
        for name, kind in (("n_features", int), ("layout", int), ("depth", int), ("base", float)):
            object.__setattr__(self, name, kind(getattr(self, name)))
        self._validate()
        self._warm_up()

    # ---------------------------------------------------------------- building

    @classmethod
    def from_estimator(cls, estimator: Any) -> CompiledForest:
        """Export a fitted binary HistGradientBoostingClassifier (`forest_layout`)."""
        exported = export_estimator(estimator)
        return cls(
            exported.n_features,
            exported.layout,
            exported.depth,
            exported.base,
            **exported.arrays,
        )

    # ---------------------------------------------------------------- scoring

    def predict_one(self, row: FloatMatrix) -> float:
        """Churn probability of one float32 row of `n_features` values."""
        if row.dtype != np.float32 or row.shape != (self.n_features,):
            raise ValueError(f"expected a float32 row of {self.n_features} values")
        return float(
            # Through the module: what a test records or replaces there is what runs.
            forest_kernels._predict_one(
                kernel_input(row),
                self.columns,
                self.fills,
                self.tables,
                self.slots,
                self.category_values,
                self.layout,
                self.depth,
                self.base,
                self.trees,
                self.node_column,
                self.node_threshold,
                self.children,
                self.node_value,
            )
        )

    def predict(self, rows: FloatMatrix) -> Probabilities:
        """Churn probability of each float32 row of an (n, `n_features`) matrix, shape (n,)."""
        # float32 only: thresholds are rounded for float32 inputs, and a silent float64 to
        # float32 cast could move a value across one.
        if rows.dtype != np.float32 or rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"expected a float32 matrix of {self.n_features} columns")
        out = np.empty(rows.shape[0], dtype=np.float64)
        forest_kernels._predict_many(
            kernel_input(rows),
            self.columns,
            self.fills,
            self.tables,
            self.slots,
            self.category_values,
            self.layout,
            self.depth,
            self.base,
            self.trees,
            self.node_column,
            self.node_threshold,
            self.children,
            self.node_value,
            WALK_BELOW_ROWS,
            out,
        )
        return out

    # ---------------------------------------------------------------- persistence

    def to_bytes(self) -> bytes:
        """The forest file's bytes: the same forest always gives the same bytes."""
        return npz_bytes(self._arrays())

    def to_npz(self, path: Path) -> None:
        """Write the forest file (a `.npz` that `np.load` reads with allow_pickle=False)."""
        path.write_bytes(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> CompiledForest:
        """Read a forest file's bytes; raises ForestFileError if malformed."""
        arrays = read_npz(data, _ARRAY_DTYPES, "forest file", ForestFileError)
        header = arrays.pop("header")
        if header.shape != (4,) or int(header[0]) != FORMAT_VERSION:
            raise ForestFileError("the forest file is of another format version")
        base = arrays.pop("base")
        if base.shape != (1,):
            raise ForestFileError("the forest file has no baseline")
        _, n_features, layout, depth = (int(v) for v in header)
        return cls(n_features, layout, depth, float(base[0]), **arrays)

    @classmethod
    def from_npz(cls, path: Path) -> CompiledForest:
        """Read a file written by `to_npz`."""
        return cls.from_bytes(path.read_bytes())

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "header": np.array(
                [FORMAT_VERSION, self.n_features, self.layout, self.depth], dtype=np.int64
            ),
            "base": np.array([self.base], dtype=np.float64),
            "columns": self.columns,
            "fills": self.fills,
            "tables": self.tables,
            "slots": self.slots,
            "category_values": self.category_values,
            "trees": self.trees,
            "node_column": self.node_column,
            "node_threshold": self.node_threshold,
            "children": self.children,
            "node_value": self.node_value,
        }

    # ---------------------------------------------------------------- checks

    def _validate(self) -> None:
        """Refuse arrays the kernels could read out of bounds with (they do not check)."""
        problems = _layout_problems(self)
        if problems:
            raise ForestFileError("inconsistent forest: " + "; ".join(problems))

    def _warm_up(self) -> None:
        # Compile both entry points now, not on the first request.
        self.predict_one(np.zeros(self.n_features, dtype=np.float32))
        self.predict(np.zeros((2, self.n_features), dtype=np.float32))


def _layout_problems(forest: CompiledForest) -> list[str]:
    problems: list[str] = []
    n_columns = forest.columns.shape[0] if forest.columns.ndim == 2 else -1
    expect: Mapping[str, tuple[int, ...]] = {
        "columns": (max(n_columns, 0), 3),
        "fills": (max(n_columns, 0),),
        "slots": (forest.slots.shape[0] if forest.slots.ndim == 2 else -1, 3),
    }
    for name, shape in expect.items():
        if getattr(forest, name).shape != shape:
            problems.append(f"{name} has shape {getattr(forest, name).shape}")
    if problems:
        return problems
    if forest.n_features < 1:
        problems.append("no features")
    if forest.tables.ndim != 1 or forest.category_values.ndim != 1:
        problems.append("tables and category values must be flat")
        return problems
    for start, size in forest.slots[:, 1:].tolist():
        if start < 0 or size < 0 or start + size > forest.category_values.size:
            problems.append("a categorical slot reaches past the category values")
    if np.any(forest.slots[:, 0] < 0) or np.any(forest.slots[:, 0] >= forest.n_features):
        problems.append("a categorical slot reads a column outside the row")
    for kind, source, table in forest.columns.tolist():
        if kind in (NUMERIC_COLUMN, IS_NAN_COLUMN):
            if not 0 <= source < forest.n_features:
                problems.append("a column reads outside the row")
        elif kind == CATEGORICAL_COLUMN:
            if not 0 <= source < forest.slots.shape[0]:
                problems.append("a categorical column names no slot")
            elif table < 0 or table + int(forest.slots[source, 2]) + 1 > forest.tables.size:
                problems.append("a categorical column's table reaches past the tables")
        else:
            problems.append(f"unknown column kind {kind}")
    if forest.layout == LAYOUT_COMPLETE:
        problems.extend(_complete_problems(forest, n_columns))
    elif forest.layout == LAYOUT_GENERAL:
        problems.extend(_general_problems(forest, n_columns))
    else:
        problems.append(f"unknown layout {forest.layout}")
    return problems


def _complete_problems(forest: CompiledForest, n_columns: int) -> list[str]:
    if not 0 <= forest.depth <= MAX_COMPLETE_DEPTH:
        return [f"depth {forest.depth} is outside the complete layout"]
    n_leaves = 1 << forest.depth
    n_trees = forest.node_value.size // n_leaves
    shapes = {
        "node_column": (n_trees * (n_leaves - 1),),
        "node_threshold": (n_trees * (n_leaves - 1),),
        "node_value": (n_trees * n_leaves,),
    }
    problems = [
        f"{name} has shape {getattr(forest, name).shape}"
        for name, shape in shapes.items()
        if getattr(forest, name).shape != shape
    ]
    if forest.node_column.size and (
        forest.node_column.min() < 0 or forest.node_column.max() >= max(n_columns, 1)
    ):
        problems.append("a node reads a column outside the decision row")
    if forest.node_column.size and n_columns < 1:
        problems.append("nodes but no decision-row columns")
    return problems


def _general_problems(forest: CompiledForest, n_columns: int) -> list[str]:
    n_nodes = forest.node_column.shape[0] if forest.node_column.ndim == 1 else -1
    problems = []
    if forest.node_threshold.shape != (n_nodes,) or forest.node_value.shape != (n_nodes,):
        problems.append("node arrays differ in length")
    if forest.children.shape != (max(n_nodes, 0), 2) or forest.trees.ndim != 2:
        problems.append("children or trees have the wrong shape")
    if problems:
        return problems
    if forest.trees.shape[1] != 2:
        problems.append("trees must be (root, depth) pairs")
    elif np.any(forest.trees[:, 0] < 0) or np.any(forest.trees[:, 0] >= n_nodes):
        problems.append("a tree's root is outside the nodes")
    elif np.any(forest.trees[:, 1] < 0) or np.any(forest.trees[:, 1] > n_nodes):
        problems.append("a tree's depth is out of range")
    if np.any(forest.children < 0) or np.any(forest.children >= n_nodes):
        problems.append("a child outside the nodes")
    if np.any(forest.node_column < 0) or np.any(forest.node_column >= n_columns):
        problems.append("a node reads a column outside the decision row")
    return problems


# --------------------------------------------------------------------------- parity


def check_parity(
    forest: CompiledForest,
    estimator: Any,
    rows: FloatMatrix,
    tolerance: float = PARITY_TOLERANCE,
) -> float:
    """The largest |compiled - sklearn| churn probability over `rows`; ParityError past
    `tolerance`. Both the batch and the one-row kernel are checked."""
    expected = np.asarray(estimator.predict_proba(rows)[:, 1], dtype=np.float64)
    return check_probabilities(forest, expected, rows, tolerance)


def check_probabilities(
    forest: CompiledForest,
    expected: npt.NDArray[np.float64],
    rows: FloatMatrix,
    tolerance: float = PARITY_TOLERANCE,
) -> float:
    """`check_parity` against probabilities the estimator gave for `rows` earlier (stored in
    the artifact at train time), so a load needs neither the estimator nor scikit-learn."""
    if expected.shape != (rows.shape[0],):
        raise ParityError(
            f"{expected.shape[0] if expected.ndim else 0} stored probabilities for "
            f"{rows.shape[0]} parity rows"
        )
    batch = forest.predict(rows)
    single = np.array([forest.predict_one(row) for row in rows], dtype=np.float64)
    gap = float(
        max(
            np.max(np.abs(batch - expected), initial=0.0),
            np.max(np.abs(single - expected), initial=0.0),
        )
    )
    if not gap <= tolerance:
        worst = int(np.argmax(np.abs(batch - expected))) if rows.shape[0] else -1
        raise ParityError(
            f"compiled forest differs from the estimator by {gap:.3g} (> {tolerance:g}); "
            f"worst row {worst}"
        )
    return gap
