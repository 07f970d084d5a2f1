"""The compiled forest's arrays, built from a fitted HistGradientBoostingClassifier.

Export: each split becomes a decision-row column and a float32 threshold. A numeric feature
gets a column whose NaN is replaced by -inf where the split sends missing values left and by
+inf where it sends them right; a split that sends only NaN right (sklearn's threshold +inf)
reads a 0/1 "is NaN" column; a categorical split reads a 0/1 column looked up from the category
code, with sklearn's rules folded in. Thresholds are rounded down to the largest float32 not
above sklearn's float64 threshold, so for float32 inputs `x <= t32` exactly when sklearn's
`x <= t`. Trees at most `MAX_COMPLETE_DEPTH` deep are padded into complete binary trees
(children of node i at 2i+1 and 2i+2); deeper ones keep their nodes with explicit children.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from churn_mlops.model.forest_kernels import (
    CATEGORICAL_COLUMN,
    IS_NAN_COLUMN,
    LAYOUT_COMPLETE,
    LAYOUT_GENERAL,
    NUMERIC_COLUMN,
)

# Forests at most this deep are padded into complete trees (2**depth leaves per tree); deeper
# ones (max_depth=None grows trees as deep as max_leaf_nodes allows) use the general layout.
MAX_COMPLETE_DEPTH = 6


class CompileError(ValueError):
    """The estimator is not a fitted binary HistGradientBoostingClassifier this module supports."""


@dataclass(frozen=True)
class ExportedForest:
    """What `CompiledForest` is built from: its scalar fields and its arrays by name."""

    n_features: int
    layout: int
    depth: int
    base: float
    arrays: dict[str, Any]


def export_estimator(estimator: Any) -> ExportedForest:
    """The arrays of a fitted binary HistGradientBoostingClassifier."""
    check_supported(estimator)
    registry = DecisionColumns({}, [], [], [], {}, [], [])
    trees = _trees(estimator, registry)
    depth = max(tree.depth() for tree in trees) if trees else 0
    base = float(np.asarray(estimator._baseline_prediction).reshape(-1)[0])
    arrays: dict[str, Any] = {
        "columns": np.array(registry.spec, dtype=np.int32).reshape(-1, 3),
        "fills": np.array(registry.fills, dtype=np.float32),
        "tables": np.array(registry.tables, dtype=np.float32),
        "slots": np.array(registry.slot_spec, dtype=np.int32).reshape(-1, 3),
        "category_values": np.array(registry.category_values, dtype=np.float64),
    }
    if depth <= MAX_COMPLETE_DEPTH:
        arrays.update(_complete_layout(trees, depth))
        layout = LAYOUT_COMPLETE
    else:
        arrays.update(_general_layout(trees))
        layout = LAYOUT_GENERAL
    return ExportedForest(int(estimator.n_features_in_), layout, depth, base, arrays)


def _float32_at_most(threshold: float) -> np.float32:
    """The largest float32 not above `threshold`: for float32 x, x <= it iff x <= threshold."""
    with np.errstate(over="ignore"):
        rounded = np.float32(threshold)
    if float(rounded) > threshold:
        rounded = np.nextafter(rounded, np.float32(-np.inf))
    return np.float32(rounded)


@dataclass(frozen=True)
class FeatureSource:
    """Where a tree's feature index reads the input row, and its known categories if any."""

    column: int
    categories: npt.NDArray[np.float64] | None


def tree_feature_sources(estimator: Any) -> list[FeatureSource]:
    """Map the trees' feature indices to input columns (sklearn puts categoricals first)."""
    n_features = int(estimator.n_features_in_)
    preprocessor = getattr(estimator, "_preprocessor", None)
    if preprocessor is None:
        return [FeatureSource(i, None) for i in range(n_features)]
    sources: list[FeatureSource | None] = [None] * n_features
    for name, transformer, selection in preprocessor.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        selection = np.asarray(selection)
        if selection.dtype.kind not in "biu":
            raise CompileError("columns selected by name are not supported; fit on arrays")
        picked = np.arange(n_features)[selection]
        output = preprocessor.output_indices_[name]
        positions = range(output.start, output.stop)
        if len(positions) != len(picked):
            raise CompileError(f"preprocessor part {name!r} changes the number of columns")
        for position, column in zip(positions, picked.tolist(), strict=True):
            if name == "encoder":
                categories = np.asarray(
                    transformer.categories_[position - output.start], dtype=np.float64
                )
                if categories.size and np.isnan(categories[-1]):
                    categories = categories[:-1]
                sources[position] = FeatureSource(column, categories)
            else:
                sources[position] = FeatureSource(column, None)
    if any(source is None for source in sources):
        raise CompileError("the preprocessor does not cover every feature")
    return [source for source in sources if source is not None]


def check_supported(estimator: Any) -> None:
    if type(estimator).__name__ != "HistGradientBoostingClassifier":
        raise CompileError(f"expected a HistGradientBoostingClassifier, got {type(estimator)}")
    if not hasattr(estimator, "_predictors"):
        raise CompileError("the estimator is not fitted")
    if int(estimator.n_trees_per_iteration_) != 1 or len(estimator.classes_) != 2:
        raise CompileError("only binary classifiers are supported")
    baseline = np.asarray(estimator._baseline_prediction)
    if baseline.size != 1:
        raise CompileError("expected one baseline prediction")


@dataclass
class DecisionColumns:
    """The decision-row columns, deduplicated, in order of first use."""

    keys: dict[tuple[Any, ...], int]
    spec: list[tuple[int, int, int]]
    fills: list[float]
    tables: list[float]
    slots: dict[int, int]
    slot_spec: list[tuple[int, int, int]]
    category_values: list[float]

    def numeric(self, column: int, missing_right: bool) -> int:
        key = ("numeric", column, missing_right)
        if key not in self.keys:
            self.keys[key] = len(self.spec)
            self.spec.append((NUMERIC_COLUMN, column, 0))
            self.fills.append(math.inf if missing_right else -math.inf)
        return self.keys[key]

    def is_nan(self, column: int) -> int:
        key = ("is_nan", column)
        if key not in self.keys:
            self.keys[key] = len(self.spec)
            self.spec.append((IS_NAN_COLUMN, column, 0))
            self.fills.append(0.0)
        return self.keys[key]

    def categorical(self, source: FeatureSource, goes_right: tuple[float, ...]) -> int:
        assert source.categories is not None  # noqa: S101 - callers check
        if source.column not in self.slots:
            self.slots[source.column] = len(self.slot_spec)
            self.slot_spec.append(
                (source.column, len(self.category_values), int(source.categories.size))
            )
            self.category_values.extend(source.categories.tolist())
        slot = self.slots[source.column]
        key = ("categorical", slot, goes_right)
        if key not in self.keys:
            self.keys[key] = len(self.spec)
            self.spec.append((CATEGORICAL_COLUMN, slot, len(self.tables)))
            self.fills.append(0.0)
            self.tables.extend(goes_right)
        return self.keys[key]


def _bit(bitset: npt.NDArray[np.uint32], value: int) -> bool:
    return bool((int(bitset[value // 32]) >> (value % 32)) & 1)


@dataclass(frozen=True)
class _Split:
    column: int
    threshold: np.float32


def split_of(
    node: Any,
    predictor: Any,
    sources: list[FeatureSource],
    known: npt.NDArray[np.uint32],
    known_index: npt.NDArray[np.uint32],
    registry: DecisionColumns,
) -> _Split:
    feature = int(node["feature_idx"])
    source = sources[feature]
    missing_right = not bool(node["missing_go_to_left"])
    if node["is_categorical"]:
        if source.categories is None:
            raise CompileError(f"categorical split on non-categorical feature {feature}")
        left = predictor.raw_left_cat_bitsets[int(node["bitset_idx"])]
        known_bits = known[int(known_index[feature])]
        goes_right = []
        for code in range(source.categories.size):
            if code < 256 and _bit(left, code):
                goes_right.append(0.0)
            elif code < 256 and _bit(known_bits, code):
                goes_right.append(1.0)
            else:
                goes_right.append(1.0 if missing_right else 0.0)
        goes_right.append(1.0 if missing_right else 0.0)  # NaN and unseen codes
        return _Split(registry.categorical(source, tuple(goes_right)), np.float32(0.5))
    threshold = float(node["num_threshold"])
    if math.isnan(threshold):
        raise CompileError("a numeric split has a NaN threshold")
    if threshold == math.inf and missing_right:
        # sklearn's split "missing values right, everything else left".
        return _Split(registry.is_nan(source.column), np.float32(0.5))
    return _Split(registry.numeric(source.column, missing_right), _float32_at_most(threshold))


@dataclass
class _Tree:
    """One tree in sklearn's node order with decision-row splits."""

    splits: list[_Split | None]
    left: list[int]
    right: list[int]
    value: list[float]

    def depth(self, node: int = 0) -> int:
        if self.splits[node] is None:
            return 0
        return 1 + max(self.depth(self.left[node]), self.depth(self.right[node]))


def _trees(estimator: Any, registry: DecisionColumns) -> list[_Tree]:
    sources = tree_feature_sources(estimator)
    known, known_index = estimator._bin_mapper.make_known_categories_bitsets()
    trees = []
    for (predictor,) in estimator._predictors:
        nodes = predictor.nodes
        tree = _Tree([], [], [], [])
        for node in nodes:
            if node["is_leaf"]:
                tree.splits.append(None)
                tree.left.append(-1)
                tree.right.append(-1)
            else:
                tree.splits.append(split_of(node, predictor, sources, known, known_index, registry))
                tree.left.append(int(node["left"]))
                tree.right.append(int(node["right"]))
            tree.value.append(float(node["value"]))
        trees.append(tree)
    return trees


def _complete_layout(trees: list[_Tree], depth: int) -> dict[str, Any]:
    n_internal = (1 << depth) - 1
    n_leaves = 1 << depth
    column = np.zeros((len(trees), n_internal), dtype=np.int32)
    # Padding nodes compare with +inf and so always go left; decision rows hold no NaN.
    threshold = np.full((len(trees), n_internal), np.inf, dtype=np.float32)
    value = np.zeros((len(trees), n_leaves), dtype=np.float64)

    for t, tree in enumerate(trees):
        stack = [(0, 0, 0)]  # (sklearn node, complete-tree position, level)
        while stack:
            node, position, level = stack.pop()
            split = tree.splits[node]
            if level == depth:
                value[t, position - n_internal] = tree.value[node]
            elif split is None:
                # A leaf above the last level: pad both sides with it.
                stack.append((node, 2 * position + 1, level + 1))
                stack.append((node, 2 * position + 2, level + 1))
            else:
                column[t, position] = split.column
                threshold[t, position] = split.threshold
                stack.append((tree.left[node], 2 * position + 1, level + 1))
                stack.append((tree.right[node], 2 * position + 2, level + 1))
    return {
        "trees": np.zeros((0, 2), dtype=np.int32),
        "node_column": column.reshape(-1),
        "node_threshold": threshold.reshape(-1),
        "children": np.zeros((0, 2), dtype=np.int32),
        "node_value": value.reshape(-1),
    }


def _general_layout(trees: list[_Tree]) -> dict[str, Any]:
    spans: list[tuple[int, int]] = []
    columns: list[int] = []
    thresholds: list[np.float32] = []
    children: list[tuple[int, int]] = []
    values: list[float] = []
    for tree in trees:
        offset = len(columns)
        spans.append((offset, tree.depth()))
        for node, split in enumerate(tree.splits):
            if split is None:
                # A leaf is its own child: walks of a fixed number of steps stay on it.
                columns.append(0)
                thresholds.append(np.float32(np.inf))
                children.append((offset + node, offset + node))
            else:
                columns.append(split.column)
                thresholds.append(split.threshold)
                children.append((offset + tree.left[node], offset + tree.right[node]))
            values.append(tree.value[node])
    return {
        "trees": np.array(spans, dtype=np.int32).reshape(-1, 2),
        "node_column": np.array(columns, dtype=np.int32),
        "node_threshold": np.array(thresholds, dtype=np.float32),
        "children": np.array(children, dtype=np.int32).reshape(-1, 2),
        "node_value": np.array(values, dtype=np.float64),
    }
