"""A compiled float32 evaluator for a binary HistGradientBoostingClassifier.

`CompiledForest.from_estimator` exports the fitted trees into flat numpy arrays that small numba
kernels evaluate on one thread, without sklearn's per-call input preprocessing (an internal
ColumnTransformer and OrdinalEncoder, most of its one-row time) and without its OpenMP pool
(which makes small predictions many times slower, scikit-learn issue #30662). Figures, and the
command that measures them: docs/performance.md, "Fast model".

Every split becomes one comparison `column > threshold` on a float32 *decision row* derived
from the input row first, so that no kernel tests for NaN or categories per node:

- a numeric feature gets a column whose NaN is replaced by -inf where the split sends missing
  values left and by +inf where it sends them right;
- a split that sends only NaN right (sklearn's threshold +inf) reads a 0/1 "is NaN" column;
- a categorical split reads a 0/1 column looked up from the category code, with sklearn's rules
  folded in: a code in the split's left set goes left, another known code goes right, NaN and
  codes the model never saw follow the split's missing-value direction.

Thresholds are rounded down to the largest float32 not above sklearn's float64 threshold, so
for float32 inputs `x <= t32` exactly when sklearn's `x <= t`: every row takes sklearn's path.
Leaf values stay float64 and are added in sklearn's order (baseline, then tree by tree), so the
raw scores are sklearn's own sums; only the final sigmoid may differ from scipy's in the last
bit. The one-row and the batch kernels add in the same order and agree exactly.

Layouts: forests at most MAX_COMPLETE_DEPTH deep (the trained model has depth-2 trees) are
padded into complete binary trees, children of node i at 2i+1 and 2i+2, no pointers. One row
walks each tree in `depth` compare-and-shift steps; a batch is evaluated bottom-up, every node
for a block of rows at once, in branch-free loops that LLVM vectorises. Deeper forests use a
general node layout, walked for a block of rows in lockstep.

The file format is a zip of `.npy` arrays written with fixed timestamps, so the same estimator
always gives the same bytes (the artifact's version hashes them); it loads without pickle, and
its arrays are bounds-checked on load because the kernels do not check indices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from churn_mlops.core.native import kernel
from churn_mlops.model.npz_file import npz_bytes, read_npz

FloatMatrix = npt.NDArray[np.float32]
Probabilities = npt.NDArray[np.float64]

FORMAT_VERSION = 1

# Forests at most this deep are padded into complete trees (2**depth leaves per tree); deeper
# ones (max_depth=None grows trees as deep as max_leaf_nodes allows) use the general layout.
MAX_COMPLETE_DEPTH = 6

# Rows per block of the batch kernel: the block's decision rows stay in L1/L2 while every tree
# visits them.
BLOCK_ROWS = 256

# Batches smaller than this walk each row down each tree: for a row or two the set-up of the
# vectorised loops (hundreds of them per block) costs more than they save.
WALK_BELOW_ROWS = 4

PARITY_TOLERANCE = 1e-5

# Kinds of decision-row columns.
_NUMERIC = 0
_CATEGORICAL = 1
_IS_NAN = 2

# Layouts of the trees.
LAYOUT_COMPLETE = 0
LAYOUT_GENERAL = 1


class CompileError(ValueError):
    """The estimator is not a fitted binary HistGradientBoostingClassifier this module supports."""


class ForestFileError(ValueError):
    """A forest file is malformed, of another format version, or its arrays are inconsistent."""


class ParityError(RuntimeError):
    """The compiled forest and the estimator disagree on some rows beyond the tolerance."""


# --------------------------------------------------------------------------- numba kernels


# The forest's arrays as every entry point takes them (CompiledForest fixes their dtypes and
# layouts when it is built): columns .. category_values, layout, depth, base, trees ..
# node_value. No parallel=True and no prange anywhere (core/native.py): numba never starts its
# thread pool, so a worker process keeps the threads it had (test_compiled checks it).
_FOREST = (
    "i4[:, ::1], f4[::1], f4[::1], i4[:, ::1], f8[::1], i8, i8, f8, "
    "i4[:, ::1], i4[::1], f4[::1], i4[:, ::1], f8[::1]"
)


@kernel()
def _category_index(value: float, values: Any, start: int, size: int) -> int:
    """Position of `value` among the sorted known categories, or `size` when unknown or NaN."""
    if value >= 0.0 and value < size and values[start + int(value)] == value:
        return int(value)  # the usual case: categories are the codes 0..size-1
    lo = 0
    hi = size
    while lo < hi:
        mid = (lo + hi) >> 1
        if values[start + mid] < value:
            lo = mid + 1
        else:
            hi = mid
    if lo < size and values[start + lo] == value:
        return lo
    return size


@kernel()
def _decision_rows(
    x: Any,
    start: int,
    size: int,
    columns: Any,
    fills: Any,
    tables: Any,
    slots: Any,
    category_values: Any,
    inputs: Any,
    codes: Any,
    block: Any,
) -> None:
    """Decision rows of `x[start:start + size]` into `block[:, :size]`, one column at a time.

    The input rows are first transposed into `inputs`, so that every later loop reads
    contiguous values and vectorises; reading the row-major input in each loop instead made
    this step about three times slower.
    """
    for r in range(size):
        for j in range(x.shape[1]):
            inputs[j, r] = x[start + r, j]
    for s in range(slots.shape[0]):
        source, first, count = slots[s, 0], slots[s, 1], slots[s, 2]
        values = inputs[source, :size]
        slot_codes = codes[s, :size]
        dense = True  # the known categories are the codes 0..count-1, as the encoder makes them
        for j in range(count):
            if category_values[first + j] != j:
                dense = False
        if dense:
            for r in range(size):
                value = values[r]
                known = (value >= 0.0) & (value < count)
                code = np.int32(value) if known else np.int32(count)
                slot_codes[r] = code if known and code == value else np.int32(count)
        else:
            for r in range(size):
                slot_codes[r] = _category_index(values[r], category_values, first, count)
    for c in range(columns.shape[0]):
        kind, source = columns[c, 0], columns[c, 1]
        out = block[c, :size]
        if kind == _NUMERIC:
            fill = fills[c]
            values = inputs[source, :size]
            for r in range(size):
                value = values[r]
                out[r] = fill if math.isnan(value) else value
        elif kind == _CATEGORICAL:
            table = tables[columns[c, 2] :]
            slot_codes = codes[source, :size]
            for r in range(size):
                out[r] = table[slot_codes[r]]
        else:
            values = inputs[source, :size]
            for r in range(size):
                out[r] = 1.0 if math.isnan(values[r]) else 0.0


@kernel()
def _sigmoid(raw: float) -> float:
    return 1.0 / (1.0 + math.exp(-raw))


@kernel()
def _walk_complete(
    row: Any, node_column: Any, node_threshold: Any, node_value: Any, depth: int, base: float
) -> float:
    """Raw score of one decision row: each tree walked from the root, `depth` steps."""
    n_internal = (1 << depth) - 1
    n_leaves = 1 << depth
    raw = base
    for t in range(node_value.shape[0] // n_leaves):
        nodes = t * n_internal
        i = 0
        for _ in range(depth):
            i = 2 * i + 1 + (row[node_column[nodes + i]] > node_threshold[nodes + i])
        raw += node_value[t * n_leaves + i - n_internal]
    return raw


@kernel()
def _walk_general(
    row: Any,
    trees: Any,
    node_column: Any,
    node_threshold: Any,
    children: Any,
    node_value: Any,
    base: float,
) -> float:
    """Raw score of one decision row: each tree walked from its root, its depth in steps."""
    raw = base
    for t in range(trees.shape[0]):
        i = trees[t, 0]
        for _ in range(trees[t, 1]):
            i = children[i, np.int64(row[node_column[i]] > node_threshold[i])]
        raw += node_value[i]
    return raw


@kernel()
def _add_complete(
    block: Any,
    size: int,
    node_column: Any,
    node_threshold: Any,
    node_value: Any,
    depth: int,
    scratch: Any,
    raw: Any,
) -> None:
    """Add every tree's leaf value to `raw[:size]`, for complete trees, bottom-up.

    Each node picks, for all rows at once, between its two children's values, so every loop is
    a branch-free compare-and-select over contiguous rows, which LLVM vectorises. The nodes just
    above the leaves are fused with their parent (one loop picks among four leaves). This
    computes all 2**depth - 1 nodes, not only the `depth` on each row's path, which pays for
    shallow trees only (hence MAX_COMPLETE_DEPTH).
    """
    n_internal = (1 << depth) - 1
    n_leaves = 1 << depth
    acc = raw[:size]
    for t in range(node_value.shape[0] // n_leaves):
        nodes = t * n_internal
        leaves = t * n_leaves - n_internal  # a leaf's value sits at leaves + its position
        if depth == 1:
            column = block[node_column[nodes], :size]
            threshold = node_threshold[nodes]
            left, right = node_value[leaves + 1], node_value[leaves + 2]
            for r in range(size):
                goes_right = column[r] > threshold
                acc[r] += right if goes_right else left
            continue
        if depth == 0:
            value = node_value[t]
            for r in range(size):
                acc[r] += value
            continue
        # Children before parents; the last internal level is evaluated by its parents.
        for k in range(n_internal - 1, -1, -1):
            if 2 * k + 1 >= n_internal:
                continue  # evaluated with its parent
            out = acc if k == 0 else scratch[k, :size]
            column = block[node_column[nodes + k], :size]
            threshold = node_threshold[nodes + k]
            a, b = 2 * k + 1, 2 * k + 2
            if 2 * a + 1 >= n_internal:
                column_a = block[node_column[nodes + a], :size]
                column_b = block[node_column[nodes + b], :size]
                threshold_a = node_threshold[nodes + a]
                threshold_b = node_threshold[nodes + b]
                leaf_aa = node_value[leaves + 2 * a + 1]
                leaf_ab = node_value[leaves + 2 * a + 2]
                leaf_ba = node_value[leaves + 2 * b + 1]
                leaf_bb = node_value[leaves + 2 * b + 2]
                for r in range(size):
                    # All three compares before any select: no branch, no conditional load.
                    right = column[r] > threshold
                    right_a = column_a[r] > threshold_a
                    right_b = column_b[r] > threshold_b
                    value_a = leaf_ab if right_a else leaf_aa
                    value_b = leaf_bb if right_b else leaf_ba
                    value = value_b if right else value_a
                    if k == 0:
                        out[r] += value
                    else:
                        out[r] = value
            else:
                lefts = scratch[a, :size]
                rights = scratch[b, :size]
                for r in range(size):
                    goes_right = column[r] > threshold
                    value_a, value_b = lefts[r], rights[r]
                    value = value_b if goes_right else value_a
                    if k == 0:
                        out[r] += value
                    else:
                        out[r] = value


@kernel()
def _add_general(
    block: Any,
    size: int,
    trees: Any,
    node_column: Any,
    node_threshold: Any,
    children: Any,
    node_value: Any,
    steps: Any,
    raw: Any,
) -> None:
    """Add every tree's leaf value to `raw[:size]`, for trees of any shape.

    All rows take a step down a tree together (leaves point to themselves, so a fixed number
    of steps, the tree's depth, ends every walk): the rows' loads are independent, so they
    overlap, and no branch depends on the data; a loop per row that stops at a leaf
    mispredicts at every level.
    """
    position = steps[:size]
    for t in range(trees.shape[0]):
        position[:] = trees[t, 0]
        for _ in range(trees[t, 1]):
            for r in range(size):
                i = position[r]
                position[r] = children[i, np.int64(block[node_column[i], r] > node_threshold[i])]
        for r in range(size):
            raw[r] += node_value[position[r]]


@kernel(f"f8(f4[::1], {_FOREST})")
def _predict_one(
    x: Any,
    columns: Any,
    fills: Any,
    tables: Any,
    slots: Any,
    category_values: Any,
    layout: int,
    depth: int,
    base: float,
    trees: Any,
    node_column: Any,
    node_threshold: Any,
    children: Any,
    node_value: Any,
) -> float:
    block = np.empty((columns.shape[0], 1), dtype=np.float32)
    inputs = np.empty((x.shape[0], 1), dtype=np.float32)
    codes = np.empty((slots.shape[0], 1), dtype=np.int32)
    _decision_rows(
        x.reshape((1, x.shape[0])),
        0,
        1,
        columns,
        fills,
        tables,
        slots,
        category_values,
        inputs,
        codes,
        block,
    )
    row = block[:, 0]
    # The same additions in the same (tree) order as the batch kernel: identical results.
    if layout == LAYOUT_COMPLETE:
        raw = _walk_complete(row, node_column, node_threshold, node_value, depth, base)
    else:
        raw = _walk_general(row, trees, node_column, node_threshold, children, node_value, base)
    probability: float = _sigmoid(raw)
    return probability


@kernel(f"void(f4[:, ::1], {_FOREST}, i8, f8[::1])")
def _predict_many(
    x: Any,
    columns: Any,
    fills: Any,
    tables: Any,
    slots: Any,
    category_values: Any,
    layout: int,
    depth: int,
    base: float,
    trees: Any,
    node_column: Any,
    node_threshold: Any,
    children: Any,
    node_value: Any,
    walk_below: int,
    out: Any,
) -> None:
    n_rows = x.shape[0]
    width = min(BLOCK_ROWS, n_rows)
    block = np.empty((columns.shape[0], width), dtype=np.float32)
    inputs = np.empty((x.shape[1], width), dtype=np.float32)
    codes = np.empty((slots.shape[0], width), dtype=np.int32)
    scratch_rows = (1 << depth) - 1 if layout == LAYOUT_COMPLETE else 0
    scratch = np.empty((scratch_rows, width), dtype=np.float64)
    raw = np.empty(width, dtype=np.float64)
    steps = np.empty(width, dtype=np.int64)
    for start in range(0, n_rows, BLOCK_ROWS):
        size = min(BLOCK_ROWS, n_rows - start)
        _decision_rows(
            x, start, size, columns, fills, tables, slots, category_values, inputs, codes, block
        )
        if size < walk_below:
            for r in range(size):
                row = block[:, r]
                if layout == LAYOUT_COMPLETE:
                    total = _walk_complete(
                        row, node_column, node_threshold, node_value, depth, base
                    )
                else:
                    total = _walk_general(
                        row, trees, node_column, node_threshold, children, node_value, base
                    )
                out[start + r] = _sigmoid(total)
            continue
        raw[:] = base
        # Trees outside, rows inside: the block's decision rows stay in cache while each tree's
        # few nodes are constants of the inner loops.
        if layout == LAYOUT_COMPLETE:
            _add_complete(block, size, node_column, node_threshold, node_value, depth, scratch, raw)
        else:
            _add_general(
                block, size, trees, node_column, node_threshold, children, node_value, steps, raw
            )
        for r in range(size):
            out[start + r] = _sigmoid(raw[r])


# --------------------------------------------------------------------------- export


def _float32_at_most(threshold: float) -> np.float32:
    """The largest float32 not above `threshold`: for float32 x, x <= it iff x <= threshold."""
    with np.errstate(over="ignore"):
        rounded = np.float32(threshold)
    if float(rounded) > threshold:
        rounded = np.nextafter(rounded, np.float32(-np.inf))
    return np.float32(rounded)


@dataclass(frozen=True)
class _Source:
    """Where a tree's feature index reads the input row, and its known categories if any."""

    column: int
    categories: npt.NDArray[np.float64] | None


def _tree_feature_sources(estimator: Any) -> list[_Source]:
    """Map the trees' feature indices to input columns (sklearn puts categoricals first)."""
    n_features = int(estimator.n_features_in_)
    preprocessor = getattr(estimator, "_preprocessor", None)
    if preprocessor is None:
        return [_Source(i, None) for i in range(n_features)]
    sources: list[_Source | None] = [None] * n_features
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
                sources[position] = _Source(column, categories)
            else:
                sources[position] = _Source(column, None)
    if any(source is None for source in sources):
        raise CompileError("the preprocessor does not cover every feature")
    return [source for source in sources if source is not None]


def _check_supported(estimator: Any) -> None:
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
class _Columns:
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
            self.spec.append((_NUMERIC, column, 0))
            self.fills.append(math.inf if missing_right else -math.inf)
        return self.keys[key]

    def is_nan(self, column: int) -> int:
        key = ("is_nan", column)
        if key not in self.keys:
            self.keys[key] = len(self.spec)
            self.spec.append((_IS_NAN, column, 0))
            self.fills.append(0.0)
        return self.keys[key]

    def categorical(self, source: _Source, goes_right: tuple[float, ...]) -> int:
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
            self.spec.append((_CATEGORICAL, slot, len(self.tables)))
            self.fills.append(0.0)
            self.tables.extend(goes_right)
        return self.keys[key]


def _bit(bitset: npt.NDArray[np.uint32], value: int) -> bool:
    return bool((int(bitset[value // 32]) >> (value % 32)) & 1)


@dataclass(frozen=True)
class _Split:
    column: int
    threshold: np.float32


def _split(
    node: Any,
    predictor: Any,
    sources: list[_Source],
    known: npt.NDArray[np.uint32],
    known_index: npt.NDArray[np.uint32],
    registry: _Columns,
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


def _trees(estimator: Any, registry: _Columns) -> list[_Tree]:
    sources = _tree_feature_sources(estimator)
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
                tree.splits.append(_split(node, predictor, sources, known, known_index, registry))
                tree.left.append(int(node["left"]))
                tree.right.append(int(node["right"]))
            tree.value.append(float(node["value"]))
        trees.append(tree)
    return trees


# --------------------------------------------------------------------------- the forest


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
        """Export a fitted binary HistGradientBoostingClassifier."""
        _check_supported(estimator)
        registry = _Columns({}, [], [], [], {}, [], [])
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
        return cls(int(estimator.n_features_in_), layout, depth, base, **arrays)

    # ---------------------------------------------------------------- scoring

    def predict_one(self, row: FloatMatrix) -> float:
        """Churn probability of one float32 row of `n_features` values."""
        if row.dtype != np.float32 or row.shape != (self.n_features,):
            raise ValueError(f"expected a float32 row of {self.n_features} values")
        return float(
            _predict_one(
                _kernel_input(row),
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
        _predict_many(
            _kernel_input(rows),
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


def _kernel_input(array: FloatMatrix) -> FloatMatrix:
    # The kernels are compiled for writable C-contiguous arrays; another kind (a strided view,
    # a read-only buffer) would compile a new version on the request path.
    if array.flags.c_contiguous and array.flags.writeable:
        return array
    return np.array(array, order="C")


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
        if kind in (_NUMERIC, _IS_NAN):
            if not 0 <= source < forest.n_features:
                problems.append("a column reads outside the row")
        elif kind == _CATEGORICAL:
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
