"""What the TreeSHAP kernel walks, derived from an explainer's nodes when it loads.

Each leaf gets its root path (node, direction, the slot of the node's player among the path's
distinct players) and a table of its players' contributions for every pattern of the bits o_j
(treeshap.py's docstring has the formula); each tree of few splits also gets one table over all
its splits' directions, the sum of its leaves' rows, so a row costs one comparison per split and
one addition per player of the tree. Before any of that, `explainer_problems` checks the arrays
a file brought (the kernels do not check indices).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from churn_mlops.core.native import kernel

if TYPE_CHECKING:
    from churn_mlops.model.treeshap import TreeExplainer

# Distinct players on one root-to-leaf path at most: a leaf's table has 2**this rows.
MAX_PATH_PLAYERS = 12

# A tree of at most this many splits gets one table over all its splits' directions (2**this
# rows of its players' contributions, 16 KiB at 8 splits and players): a row then costs one
# comparison per split and one addition per player. Larger trees use the per-leaf tables.
MAX_TABLE_SPLITS = 8


class ExplainerFileError(ValueError):
    """An explainer file is malformed, of another format version, or inconsistent."""


@kernel("void(f8[::1], f8[::1], i4[::1], i8[::1], f8[:, ::1], f8[::1])")
def _leaf_tables(
    value: Any, zero: Any, player_start: Any, table_start: Any, weights: Any, out: Any
) -> None:
    """Each leaf's contribution table: for every pattern p of its u players' bits o
    (bit k of p is o_k), the u contributions, at out[table_start + p * u + k]."""
    coefficients = np.empty(MAX_PATH_PLAYERS + 1, dtype=np.float64)
    for leaf in range(value.shape[0]):
        first = player_start[leaf]
        u = player_start[leaf + 1] - first
        for pattern in range(1 << u):
            for i in range(u):
                # Coefficients of prod_{j != i} (z_j + o_j t): t**s collects the subsets of
                # size s, each weighted by prod_S o_j * prod_rest z_j.
                coefficients[0] = 1.0
                degree = 0
                for j in range(u):
                    if j == i:
                        continue
                    o = float((pattern >> j) & 1)
                    z = zero[first + j]
                    coefficients[degree + 1] = 0.0
                    for s in range(degree + 1, 0, -1):
                        coefficients[s] = coefficients[s] * z + coefficients[s - 1] * o
                    coefficients[0] *= z
                    degree += 1
                total = 0.0
                for s in range(u):
                    total += coefficients[s] * weights[u, s]
                o_i = float((pattern >> i) & 1)
                out[table_start[leaf] + pattern * u + i] = (
                    value[leaf] * (o_i - zero[first + i]) * total
                )


@kernel(
    "void(i4[::1], i4[::1], i4[::1], i4[::1], b1[::1], i4[::1], i4[::1], i4[::1], i8[::1], "
    "f8[::1], i4[::1], i4[::1], i8[::1], f8[::1])"
)
def _tree_tables(
    tree_leaf_start: Any,
    node_bit: Any,
    leaf_path_start: Any,
    path_node: Any,
    path_right: Any,
    path_slot: Any,
    leaf_player_start: Any,
    leaf_tree_slot: Any,
    leaf_table_start: Any,
    leaf_table: Any,
    tree_bits: Any,
    tree_player_start: Any,
    tree_table_start: Any,
    out: Any,
) -> None:
    """For each tree with a table (tree_table_start >= 0): for every pattern of its split
    nodes' directions (bit b: the node numbered b goes right), its players' contributions, the
    sum of its leaves' table rows."""
    for t in range(tree_bits.shape[0]):
        if tree_table_start[t] < 0:
            continue
        players = tree_player_start[t + 1] - tree_player_start[t]
        for directions in range(1 << tree_bits[t]):
            at = tree_table_start[t] + directions * players
            for s in range(players):
                out[at + s] = 0.0
            for leaf in range(tree_leaf_start[t], tree_leaf_start[t + 1]):
                first = leaf_player_start[leaf]
                u = leaf_player_start[leaf + 1] - first
                pattern = (1 << u) - 1
                for q in range(leaf_path_start[leaf], leaf_path_start[leaf + 1]):
                    goes_right = (directions >> node_bit[path_node[q]]) & 1
                    if goes_right != path_right[q]:
                        pattern &= ~(1 << path_slot[q])
                row = leaf_table_start[leaf] + pattern * u
                for k in range(u):
                    out[at + leaf_tree_slot[first + k]] += leaf_table[row + k]


def _shapley_weights(max_players: int) -> npt.NDArray[np.float64]:
    """weights[u, s] = s! (u - s - 1)! / u!, the weight of a coalition of s of u players."""
    weights = np.zeros((max_players + 1, max_players + 1), dtype=np.float64)
    for u in range(1, max_players + 1):
        for s in range(u):
            weights[u, s] = math.factorial(s) * math.factorial(u - s - 1) / math.factorial(u)
    return weights


@dataclass(frozen=True, eq=False)
class Plan:
    """What the kernel walks, derived at load from the nodes: each tree's splits and players,
    each leaf's root path (node, direction, slot of its player) and players, the leaves' and
    the small trees' contribution tables."""

    tree_split_start: npt.NDArray[np.int32]
    split_node: npt.NDArray[np.int32]
    tree_player_start: npt.NDArray[np.int32]
    tree_player: npt.NDArray[np.int32]
    tree_table_start: npt.NDArray[np.int64]
    tree_table: npt.NDArray[np.float64]
    tree_leaf_start: npt.NDArray[np.int32]
    leaf_path_start: npt.NDArray[np.int32]
    path_node: npt.NDArray[np.int32]
    path_right: npt.NDArray[np.bool_]
    path_slot: npt.NDArray[np.int32]
    leaf_player_start: npt.NDArray[np.int32]
    leaf_player: npt.NDArray[np.int32]
    leaf_table_start: npt.NDArray[np.int64]
    leaf_table: npt.NDArray[np.float64]
    expected_value: float
    """The sum over trees of each tree's cover-weighted mean leaf value."""


@dataclass
class _PlanLists:
    """Plan's arrays while they are collected."""

    tree_split_start: list[int] = field(default_factory=lambda: [0])
    split_node: list[int] = field(default_factory=list)
    tree_player_start: list[int] = field(default_factory=lambda: [0])
    tree_player: list[int] = field(default_factory=list)
    tree_leaf_start: list[int] = field(default_factory=lambda: [0])
    leaf_path_start: list[int] = field(default_factory=lambda: [0])
    path_node: list[int] = field(default_factory=list)
    path_right: list[bool] = field(default_factory=list)
    path_slot: list[int] = field(default_factory=list)
    leaf_player_start: list[int] = field(default_factory=lambda: [0])
    leaf_player: list[int] = field(default_factory=list)
    leaf_tree_slot: list[int] = field(default_factory=list)
    leaf_zero: list[float] = field(default_factory=list)
    leaf_value: list[float] = field(default_factory=list)
    expected_value: float = 0.0


@dataclass(frozen=True)
class Nodes:
    """An explainer's nodes (treeshap.TreeExplainer documents them)."""

    tree_start: npt.NDArray[np.int32]
    children: npt.NDArray[np.int32]
    node_player: npt.NDArray[np.int32]
    node_cover: npt.NDArray[np.float64]
    node_value: npt.NDArray[np.float64]


def _walk_tree(nodes: Nodes, t: int, lists: _PlanLists) -> None:
    """Add tree t's splits, players and leaves to `lists`; children are checked to stay within
    the tree and the walk to end."""
    first, stop = int(nodes.tree_start[t]), int(nodes.tree_start[t + 1])
    children, cover = nodes.children, nodes.node_cover
    tree_slots: dict[int, int] = {}
    stack: list[tuple[int, list[tuple[int, bool, float]]]] = [(first, [])]
    visited = 0
    while stack:
        node, path = stack.pop()
        visited += 1
        if visited > stop - first:
            raise ExplainerFileError(f"tree {t} is not a tree")
        left, right = (int(c) for c in children[node])
        if left >= 0:
            if not (0 <= left < stop - first and 0 <= right < stop - first):
                raise ExplainerFileError(f"a child of tree {t} is outside the tree")
            lists.split_node.append(node)
            tree_slots.setdefault(int(nodes.node_player[node]), len(tree_slots))
            for child, goes_right in ((first + left, False), (first + right, True)):
                stack.append((child, [*path, (node, goes_right, cover[child] / cover[node])]))
            continue
        slots: dict[int, int] = {}
        fractions: list[float] = []
        for parent, goes_right, ratio in path:
            who = int(nodes.node_player[parent])
            if who not in slots:
                slots[who] = len(fractions)
                fractions.append(1.0)
            fractions[slots[who]] *= ratio
            lists.path_node.append(parent)
            lists.path_right.append(goes_right)
            lists.path_slot.append(slots[who])
        if len(slots) > MAX_PATH_PLAYERS:
            raise ExplainerFileError(f"a path of tree {t} has more than {MAX_PATH_PLAYERS} players")
        lists.leaf_path_start.append(len(lists.path_node))
        lists.leaf_player.extend(slots)
        lists.leaf_tree_slot.extend(tree_slots[who] for who in slots)
        lists.leaf_zero.extend(fractions)
        lists.leaf_player_start.append(len(lists.leaf_player))
        value = float(nodes.node_value[node])
        lists.leaf_value.append(value)
        lists.expected_value += value * float(math.prod(ratio for _, _, ratio in path))
    lists.tree_split_start.append(len(lists.split_node))
    lists.tree_player.extend(tree_slots)
    lists.tree_player_start.append(len(lists.tree_player))
    lists.tree_leaf_start.append(len(lists.leaf_value))


def _int32(values: list[int] | list[bool]) -> npt.NDArray[np.int32]:
    return np.array(values, dtype=np.int32)


def derive_plan(nodes: Nodes) -> Plan:
    """The kernel's arrays and tables from an explainer's nodes; ExplainerFileError if they
    are not trees."""
    lists = _PlanLists()
    for t in range(nodes.tree_start.size - 1):
        _walk_tree(nodes, t, lists)
    counts = np.diff(np.array(lists.leaf_player_start, dtype=np.int64))
    sizes = np.left_shift(counts, counts)  # u players, 2**u patterns
    leaf_table_start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    leaf_table = np.empty(int(np.sum(sizes)), dtype=np.float64)
    leaf_player_start = _int32(lists.leaf_player_start)
    _leaf_tables(
        np.array(lists.leaf_value, dtype=np.float64),
        np.array(lists.leaf_zero, dtype=np.float64),
        leaf_player_start,
        leaf_table_start,
        _shapley_weights(MAX_PATH_PLAYERS),
        leaf_table,
    )
    tree_split_start = _int32(lists.tree_split_start)
    split_node = _int32(lists.split_node)
    node_bit = np.full(nodes.node_value.shape[0], -1, dtype=np.int32)
    tree_bits = np.diff(tree_split_start)
    for t in range(tree_bits.size):
        node_bit[split_node[tree_split_start[t] : tree_split_start[t + 1]]] = np.arange(
            tree_bits[t]
        )
    tree_player_start = _int32(lists.tree_player_start)
    players = np.diff(tree_player_start).astype(np.int64)
    tree_sizes = np.where(tree_bits <= MAX_TABLE_SPLITS, np.left_shift(players, tree_bits), 0)
    tree_table_start = np.concatenate([[0], np.cumsum(tree_sizes)[:-1]]).astype(np.int64)
    tree_table_start[tree_bits > MAX_TABLE_SPLITS] = -1
    tree_table = np.empty(int(np.sum(tree_sizes)), dtype=np.float64)
    tree_leaf_start = _int32(lists.tree_leaf_start)
    leaf_path_start = _int32(lists.leaf_path_start)
    path_node, path_right = _int32(lists.path_node), np.array(lists.path_right, dtype=np.bool_)
    path_slot = _int32(lists.path_slot)
    _tree_tables(
        tree_leaf_start,
        node_bit,
        leaf_path_start,
        path_node,
        path_right,
        path_slot,
        leaf_player_start,
        _int32(lists.leaf_tree_slot),
        leaf_table_start,
        leaf_table,
        tree_bits.astype(np.int32),
        tree_player_start,
        tree_table_start,
        tree_table,
    )
    return Plan(
        tree_split_start,
        split_node,
        tree_player_start,
        _int32(lists.tree_player),
        tree_table_start,
        tree_table,
        tree_leaf_start,
        leaf_path_start,
        path_node,
        path_right,
        path_slot,
        leaf_player_start,
        _int32(lists.leaf_player),
        leaf_table_start,
        leaf_table,
        lists.expected_value,
    )


def explainer_problems(explainer: TreeExplainer) -> list[str]:
    """What would let the kernels read out of bounds or the derivation loop forever."""
    n_nodes = explainer.node_value.shape[0]
    node_arrays = ("node_player", "node_column", "node_threshold", "node_cover")
    problems = [
        f"{name} differs in length from node_value"
        for name in node_arrays
        if getattr(explainer, name).shape != (n_nodes,)
    ]
    if explainer.children.shape != (n_nodes, 2):
        problems.append("children has the wrong shape")
    starts = explainer.tree_start
    if starts.ndim != 1 or starts.size < 1 or starts[0] != 0 or starts[-1] != n_nodes:
        problems.append("tree_start does not cover the nodes")
    elif np.any(np.diff(starts) < 1):
        problems.append("a tree has no nodes")
    if explainer.columns.ndim != 2 or explainer.columns.shape[1] != 3:
        problems.append("columns has the wrong shape")
    elif explainer.fills.shape != (explainer.columns.shape[0],):
        problems.append("fills differs in length from columns")
    if explainer.slots.ndim != 2 or explainer.slots.shape[1] != 3:
        problems.append("slots has the wrong shape")
    if problems:
        return problems
    problems.extend(_decision_problems(explainer))
    internal = explainer.children[:, 0] >= 0
    if np.any(explainer.node_player[internal] < 0) or np.any(
        explainer.node_player >= explainer.n_features
    ):
        problems.append("a split's player is outside the row")
    if np.any(explainer.node_column < 0) or np.any(
        explainer.node_column >= max(explainer.columns.shape[0], 1)
    ):
        problems.append("a node reads outside the decision row")
    if np.any(explainer.node_cover[internal] <= 0) or not np.all(np.isfinite(explainer.node_cover)):
        problems.append("a split has no cover")
    return problems


def _decision_problems(explainer: TreeExplainer) -> list[str]:
    problems = []
    n_features, slots = explainer.n_features, explainer.slots
    for start, size in slots[:, 1:].tolist():
        if start < 0 or size < 0 or start + size > explainer.category_values.size:
            problems.append("a categorical slot reaches past the category values")
    if np.any(slots[:, 0] < 0) or np.any(slots[:, 0] >= n_features):
        problems.append("a categorical slot reads a column outside the row")
    for kind, source, table in explainer.columns.tolist():
        if kind == 1:
            if not 0 <= source < slots.shape[0]:
                problems.append("a categorical column names no slot")
            elif table < 0 or table + int(slots[source, 2]) + 1 > explainer.tables.size:
                problems.append("a categorical column's table reaches past the tables")
        elif kind in (0, 2):
            if not 0 <= source < n_features:
                problems.append("a column reads outside the row")
        else:
            problems.append(f"unknown column kind {kind}")
    return problems
