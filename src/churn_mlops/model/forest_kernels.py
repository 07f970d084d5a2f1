"""The numba kernels of the compiled forest (`model/compiled.py`): one row or a batch of
float32 rows scored against the forest's flat arrays.

Every split is one comparison `column > threshold` on a float32 *decision row* that
`_decision_rows` derives from the input row first (`model/forest_layout.py` builds the columns),
so that no kernel tests for NaN or categories per node. Complete layout (forests at most
`MAX_COMPLETE_DEPTH` deep): one row walks each tree in `depth` compare-and-shift steps, a batch
is evaluated bottom-up, every node for a block of rows at once, in branch-free loops that LLVM
vectorises. General layout: a block of rows walks each tree in lockstep. Leaf values are added
in sklearn's order (baseline, then tree by tree) by both entry points, which agree exactly.

The kernels do not check indices: `CompiledForest` refuses arrays they could read out of
bounds with before any kernel sees them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from churn_mlops.core.native import kernel

# Rows per block of the batch kernel: the block's decision rows stay in L1/L2 while every tree
# visits them.
BLOCK_ROWS = 256

# Batches smaller than this walk each row down each tree: for a row or two the set-up of the
# vectorised loops (hundreds of them per block) costs more than they save.
WALK_BELOW_ROWS = 4

# Kinds of decision-row columns.
NUMERIC_COLUMN = 0
CATEGORICAL_COLUMN = 1
IS_NAN_COLUMN = 2

# Layouts of the trees.
LAYOUT_COMPLETE = 0
LAYOUT_GENERAL = 1


def kernel_input(array: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    # The kernels are compiled for writable C-contiguous arrays; another kind (a strided view,
    # a read-only buffer) would compile a new version on the request path.
    if array.flags.c_contiguous and array.flags.writeable:
        return array
    return np.array(array, order="C")


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
        if kind == NUMERIC_COLUMN:
            fill = fills[c]
            values = inputs[source, :size]
            for r in range(size):
                value = values[r]
                out[r] = fill if math.isnan(value) else value
        elif kind == CATEGORICAL_COLUMN:
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
