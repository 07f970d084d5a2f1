"""Exact path-dependent TreeSHAP on the compiled forest: each feature's contribution to a row's
log-odds, as the `shap` library's TreeExplainer computes them for this model.

What it takes is exported from the estimator when the artifact is built (`from_estimator`) into
the explainer file (explainer.npz, a zip of `.npy` arrays, no pickle): per node of every tree
its SHAP *player* (the original input column it splits on), its decision-row column and
threshold (as in compiled.py, so NaN and unseen categories take sklearn's direction), its
children, its cover (sklearn's node `count`) and its value. A serving worker needs nothing else:
no scikit-learn, no estimator.

Path-dependent TreeSHAP is the Shapley value of the game v(S) = the tree's cover-weighted
expectation given the features in S. For one leaf of value w whose root path splits on the
distinct players U (with z_j the product of the path's cover ratios at j's nodes, and o_j 1 when
the row goes the path's way at every one of them), v(S) = w * prod(o_j if j in S else z_j), and
player i's Shapley value in that game is

    w * (o_i - z_i) * sum_{S in U - i} |S|! (|U| - |S| - 1)! / |U|! * prod_S o_j * prod_rest z_j

which depends on the row only through the |U| bits o. So at load each leaf gets a table of its
players' contributions for all 2**|U| patterns (|U| <= depth, at most 5 in training's search
space), and a row's explanation is, per tree, one comparison per node and one lookup and |U|
additions per leaf: no recursion, no per-row allocation. Shapley values add over leaves and
trees, so the sum is the exact TreeSHAP value; contributions plus the base value (the baseline
plus each tree's cover-weighted mean leaf) equal the raw log-odds up to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from churn_mlops.core.native import kernel
from churn_mlops.model.forest_kernels import (
    BLOCK_ROWS,
    WALK_BELOW_ROWS,
    _decision_rows,
    kernel_input,
)
from churn_mlops.model.forest_layout import (
    DecisionColumns,
    check_supported,
    split_of,
    tree_feature_sources,
)
from churn_mlops.model.npz_file import npz_bytes, read_npz
from churn_mlops.model.treeshap_plan import (
    ExplainerFileError as ExplainerFileError,  # re-exported: what from_bytes raises
)
from churn_mlops.model.treeshap_plan import (
    Nodes,
    Plan,
    derive_plan,
    explainer_problems,
)

FORMAT_VERSION = 1


FloatMatrix = npt.NDArray[np.float32]
Contributions = npt.NDArray[np.float64]

_ARRAY_DTYPES: dict[str, type[np.generic]] = {
    "header": np.int64,
    "baseline": np.float64,
    "columns": np.int32,
    "fills": np.float32,
    "tables": np.float32,
    "slots": np.int32,
    "category_values": np.float64,
    "tree_start": np.int32,
    "children": np.int32,
    "node_player": np.int32,
    "node_column": np.int32,
    "node_threshold": np.float32,
    "node_cover": np.float64,
    "node_value": np.float64,
}


# --------------------------------------------------------------------------- numba kernels


@kernel(
    "void(f4[:, ::1], i4[:, ::1], f4[::1], f4[::1], i4[:, ::1], f8[::1], i4[::1], f4[::1], "
    "i4[::1], i4[::1], i4[::1], i4[::1], i8[::1], f8[::1], i4[::1], i4[::1], i4[::1], b1[::1], "
    "i4[::1], i4[::1], i4[::1], i8[::1], f8[::1], f8[:, ::1])"
)
def _explain_many(
    x: Any,
    columns: Any,
    fills: Any,
    tables: Any,
    slots: Any,
    category_values: Any,
    node_column: Any,
    node_threshold: Any,
    tree_split_start: Any,
    split_node: Any,
    tree_player_start: Any,
    tree_player: Any,
    tree_table_start: Any,
    tree_table: Any,
    tree_leaf_start: Any,
    leaf_path_start: Any,
    path_node: Any,
    path_right: Any,
    path_slot: Any,
    leaf_player_start: Any,
    leaf_player: Any,
    leaf_table_start: Any,
    leaf_table: Any,
    out: Any,
) -> None:
    """Add every row's contributions to `out` (n_rows, n_features), zeroed by the caller.

    Trees outside, rows inside, so a tree's table stays in cache for a block of rows. A tree of
    few splits reads one table row indexed by its splits' directions; a larger one reads a
    table row per leaf, indexed by the leaf's pattern.
    """
    n_rows = x.shape[0]
    width = min(BLOCK_ROWS, n_rows)
    block = np.empty((columns.shape[0], width), dtype=np.float32)
    inputs = np.empty((x.shape[1], width), dtype=np.float32)
    codes = np.empty((slots.shape[0], width), dtype=np.int32)
    goes_right = np.empty(node_column.shape[0], dtype=np.bool_)
    directions = np.empty(width, dtype=np.int64)
    for start in range(0, n_rows, BLOCK_ROWS):
        size = min(BLOCK_ROWS, n_rows - start)
        _decision_rows(
            x, start, size, columns, fills, tables, slots, category_values, inputs, codes, block
        )
        for t in range(tree_table_start.shape[0]):
            if tree_table_start[t] >= 0:
                _add_table_tree(
                    t, start, size, block, node_column, node_threshold, tree_split_start,
                    split_node, tree_player_start, tree_player, tree_table_start, tree_table,
                    directions, out,
                )  # fmt: skip
            else:
                _add_leaf_tree(
                    t, start, size, block, node_column, node_threshold, tree_split_start,
                    split_node, tree_leaf_start, leaf_path_start, path_node, path_right,
                    path_slot, leaf_player_start, leaf_player, leaf_table_start, leaf_table,
                    goes_right, out,
                )  # fmt: skip


@kernel()
def _add_table_tree(
    t: int,
    start: int,
    size: int,
    block: Any,
    node_column: Any,
    node_threshold: Any,
    tree_split_start: Any,
    split_node: Any,
    tree_player_start: Any,
    tree_player: Any,
    tree_table_start: Any,
    tree_table: Any,
    directions: Any,
    out: Any,
) -> None:
    """Tree `t` of few splits, for the block's rows: one table row, indexed by the splits'
    directions. Split by split over the rows: contiguous, branch-free, vectorised; plain
    indexing, no slices (a view costs as much as a one-row tree)."""
    first_player = tree_player_start[t]
    players = tree_player_start[t + 1] - first_player
    first_split = tree_split_start[t]
    if size < WALK_BELOW_ROWS:
        # A row or two: the vectorised loops' set-up would cost more than they save.
        for r in range(size):
            walked = 0
            for b in range(tree_split_start[t + 1] - first_split):
                n = split_node[first_split + b]
                if block[node_column[n], r] > node_threshold[n]:
                    walked |= 1 << b
            at = tree_table_start[t] + walked * players
            for s in range(players):
                out[start + r, tree_player[first_player + s]] += tree_table[at + s]
        return
    for r in range(size):
        directions[r] = 0
    for b in range(tree_split_start[t + 1] - first_split):
        n = split_node[first_split + b]
        column = node_column[n]
        threshold = node_threshold[n]
        for r in range(size):
            directions[r] |= np.int64(block[column, r] > threshold) << b
    for r in range(size):
        at = tree_table_start[t] + directions[r] * players
        for s in range(players):
            out[start + r, tree_player[first_player + s]] += tree_table[at + s]


@kernel()
def _add_leaf_tree(
    t: int,
    start: int,
    size: int,
    block: Any,
    node_column: Any,
    node_threshold: Any,
    tree_split_start: Any,
    split_node: Any,
    tree_leaf_start: Any,
    leaf_path_start: Any,
    path_node: Any,
    path_right: Any,
    path_slot: Any,
    leaf_player_start: Any,
    leaf_player: Any,
    leaf_table_start: Any,
    leaf_table: Any,
    goes_right: Any,
    out: Any,
) -> None:
    """Tree `t` of many splits, row by row: a table row per leaf, indexed by the pattern of
    the leaf's path that the row follows."""
    for r in range(size):
        for b in range(tree_split_start[t], tree_split_start[t + 1]):
            n = split_node[b]
            goes_right[n] = block[node_column[n], r] > node_threshold[n]
        for leaf in range(tree_leaf_start[t], tree_leaf_start[t + 1]):
            first = leaf_player_start[leaf]
            u = leaf_player_start[leaf + 1] - first
            pattern = (1 << u) - 1
            for q in range(leaf_path_start[leaf], leaf_path_start[leaf + 1]):
                if goes_right[path_node[q]] != path_right[q]:
                    pattern &= ~(1 << path_slot[q])
            at = leaf_table_start[leaf] + pattern * u
            for k in range(u):
                out[start + r, leaf_player[first + k]] += leaf_table[at + k]


# --------------------------------------------------------------------------- the explainer


@dataclass(frozen=True, eq=False)
class TreeExplainer:
    """Path-dependent TreeSHAP for a binary HGB classifier, from flat arrays.

    Decision-row arrays (`columns` .. `category_values`) mean what they mean in CompiledForest.
    Nodes of all trees follow each other in sklearn's order, tree t's from tree_start[t];
    `children` holds each node's (left, right) within its tree, (-1, -1) for a leaf;
    `node_player` the input column a split is about (-1 for a leaf); `node_cover` sklearn's
    training-sample count of the node.
    """

    n_features: int
    baseline: float
    columns: npt.NDArray[np.int32]
    fills: npt.NDArray[np.float32]
    tables: npt.NDArray[np.float32]
    slots: npt.NDArray[np.int32]
    category_values: npt.NDArray[np.float64]
    tree_start: npt.NDArray[np.int32]
    children: npt.NDArray[np.int32]
    node_player: npt.NDArray[np.int32]
    node_column: npt.NDArray[np.int32]
    node_threshold: npt.NDArray[np.float32]
    node_cover: npt.NDArray[np.float64]
    node_value: npt.NDArray[np.float64]
    _plan: Plan = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name, dtype in _ARRAY_DTYPES.items():
            if name not in ("header", "baseline"):
                array = np.require(getattr(self, name), dtype=dtype, requirements=["C", "W"])
                object.__setattr__(self, name, array)
        object.__setattr__(self, "n_features", int(self.n_features))
        object.__setattr__(self, "baseline", float(self.baseline))
        problems = explainer_problems(self)
        if problems:
            raise ExplainerFileError("inconsistent explainer: " + "; ".join(problems))
        nodes = Nodes(
            self.tree_start, self.children, self.node_player, self.node_cover, self.node_value
        )
        object.__setattr__(self, "_plan", derive_plan(nodes))
        self.explain(np.zeros((2, self.n_features), dtype=np.float32))  # compile now

    @property
    def base_value(self) -> float:
        """The model's log-odds before any feature is known: what contributions start from."""
        return float(self.baseline + self._plan.expected_value)

    # ---------------------------------------------------------------- building

    @classmethod
    def from_estimator(cls, estimator: Any) -> TreeExplainer:
        """Export a fitted binary HistGradientBoostingClassifier (build time: needs sklearn)."""
        check_supported(estimator)
        registry = DecisionColumns({}, [], [], [], {}, [], [])
        sources = tree_feature_sources(estimator)
        known, known_index = estimator._bin_mapper.make_known_categories_bitsets()
        starts, children, players, node_columns = [0], [], [], []
        thresholds, covers, values = [], [], []
        for (predictor,) in estimator._predictors:
            for node in predictor.nodes:
                if node["is_leaf"]:
                    children.append((-1, -1))
                    players.append(-1)
                    node_columns.append(0)
                    thresholds.append(np.float32(np.inf))
                else:
                    split = split_of(node, predictor, sources, known, known_index, registry)
                    children.append((int(node["left"]), int(node["right"])))
                    players.append(sources[int(node["feature_idx"])].column)
                    node_columns.append(split.column)
                    thresholds.append(split.threshold)
                covers.append(float(node["count"]))
                values.append(float(node["value"]))
            starts.append(len(values))
        return cls(
            int(estimator.n_features_in_),
            float(np.asarray(estimator._baseline_prediction).reshape(-1)[0]),
            np.array(registry.spec, dtype=np.int32).reshape(-1, 3),
            np.array(registry.fills, dtype=np.float32),
            np.array(registry.tables, dtype=np.float32),
            np.array(registry.slot_spec, dtype=np.int32).reshape(-1, 3),
            np.array(registry.category_values, dtype=np.float64),
            np.array(starts, dtype=np.int32),
            np.array(children, dtype=np.int32).reshape(-1, 2),
            np.array(players, dtype=np.int32),
            np.array(node_columns, dtype=np.int32),
            np.array(thresholds, dtype=np.float32),
            np.array(covers, dtype=np.float64),
            np.array(values, dtype=np.float64),
        )

    # ---------------------------------------------------------------- explaining

    def explain(self, rows: FloatMatrix) -> Contributions:
        """Each feature's contribution to each row's log-odds, shape (n, n_features); a row's
        contributions plus `base_value` are its raw log-odds."""
        if rows.dtype != np.float32 or rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"expected a float32 matrix of {self.n_features} columns")
        out = np.zeros(rows.shape, dtype=np.float64)
        plan = self._plan
        _explain_many(
            kernel_input(rows),
            self.columns,
            self.fills,
            self.tables,
            self.slots,
            self.category_values,
            self.node_column,
            self.node_threshold,
            plan.tree_split_start,
            plan.split_node,
            plan.tree_player_start,
            plan.tree_player,
            plan.tree_table_start,
            plan.tree_table,
            plan.tree_leaf_start,
            plan.leaf_path_start,
            plan.path_node,
            plan.path_right,
            plan.path_slot,
            plan.leaf_player_start,
            plan.leaf_player,
            plan.leaf_table_start,
            plan.leaf_table,
            out,
        )
        return out

    # ---------------------------------------------------------------- persistence

    def to_bytes(self) -> bytes:
        """The explainer file's bytes: the same explainer always gives the same bytes."""
        return npz_bytes(self._arrays())

    @classmethod
    def from_bytes(cls, data: bytes) -> TreeExplainer:
        """Read an explainer file's bytes; raises ExplainerFileError if malformed."""
        arrays = read_npz(data, _ARRAY_DTYPES, "explainer file", ExplainerFileError)
        header = arrays.pop("header")
        if header.shape != (2,) or int(header[0]) != FORMAT_VERSION:
            raise ExplainerFileError("the explainer file is of another format version")
        baseline = arrays.pop("baseline")
        if baseline.shape != (1,):
            raise ExplainerFileError("the explainer file has no baseline")
        return cls(int(header[1]), float(baseline[0]), **arrays)

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "header": np.array([FORMAT_VERSION, self.n_features], dtype=np.int64),
            "baseline": np.array([self.baseline], dtype=np.float64),
            **{name: getattr(self, name) for name in _ARRAY_DTYPES if name not in _FILE_ONLY},
        }


_FILE_ONLY = frozenset({"header", "baseline"})
