"""Each exported kernel of the compiled extension gives exactly what numba's JIT gives for the
same inputs: its return values and every array it writes, bit for bit (NaN where NaN). The
inputs are the calls the serving code makes on random rows and edge cases (NaN, unknown and
fractional category codes, empty batches, several blocks, a forest deep enough for the general
layout and TreeSHAP's per-leaf tables); the JIT replays them in a process of its own
(CHURN_KERNELS=jit), since this one serves from the extension."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from churn_mlops.api.v2.kernels import CategoryTable, split_bytes
from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import CATEGORICAL_FEATURES, FEATURE_NAMES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.compiled import CompiledForest
from churn_mlops.model.treeshap import TreeExplainer
from churn_mlops.security.limits import json_shape
from tests.fixtures.kernels import require_compiled_kernels
from tests.unit.native.calls import Call, exported, load, recording, replay, save

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.timeout(300)


def _edge_rows(rows: np.ndarray[Any, Any], forest: CompiledForest) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(15)
    edge = np.array(rows[: min(len(rows), 300)], dtype=np.float32)
    edge[rng.random(edge.shape) < 0.15] = np.nan
    for column in forest.slots[:, 0]:
        unknown = rng.random(len(edge)) < 0.2
        edge[unknown, column] = rng.choice([-1.0, 0.5, 99.0, 1e9], int(unknown.sum()))
    numeric = rng.random(edge.shape) < 0.05
    edge[numeric] = rng.choice([np.inf, -np.inf, 1e30, -0.0], int(numeric.sum()))
    return np.ascontiguousarray(np.concatenate([rows[:300], edge]), dtype=np.float32)


def _serve(forest: CompiledForest, explainer: TreeExplainer, rows: np.ndarray[Any, Any]) -> None:
    for size in (0, 1, 3, 4, 257, len(rows)):
        forest.predict(rows[:size])
        explainer.explain(rows[:size])
    for row in rows[::97]:
        forest.predict_one(row)
    forest.predict_one(np.full(forest.n_features, np.nan, dtype=np.float32))


def _exercise(artifact: ModelArtifact, dataset: TelcoDataset) -> None:
    rows = _edge_rows(artifact.parity_rows, artifact.forest)
    explainer = TreeExplainer.from_bytes(artifact.explainer_bytes or b"")
    _serve(artifact.forest, explainer, rows)
    # Deep trees: the general layout, and TreeSHAP's per-leaf tables.
    mask = [name in CATEGORICAL_FEATURES for name in FEATURE_NAMES]
    deep = HistGradientBoostingClassifier(
        max_iter=8, max_depth=None, max_leaf_nodes=24, categorical_features=mask, random_state=0
    ).fit(artifact.encoder.encode_columns(dataset.columns), np.asarray(dataset.churned, int))
    _serve(CompiledForest.from_estimator(deep), TreeExplainer.from_estimator(deep), rows)

    profile = artifact.drift_profile
    assert profile is not None
    counts = np.zeros((2, profile.n_bins), dtype=np.int64)
    probabilities = artifact.forest.predict(rows)
    probabilities[::7] = np.nan
    profile.add_counts(counts, rows, probabilities, slot=1)
    profile.add_counts(counts, rows[:0], probabilities[:0])

    elements = [b"Yes", b"No", b"", b"Fiber optic", b"Ye", b"Yess", "é".encode()]
    block = np.frombuffer(b"".join(len(e).to_bytes(4, "little") + e for e in elements), np.uint8)
    for data, count in ((block, len(elements)), (block[:-1], 7), (block, 3), (block[:0], 0)):
        starts, lengths, _ = split_bytes(data, count)
    starts, lengths, _ = split_bytes(block, len(elements))
    table = CategoryTable(["No", "Yes", "Fiber optic", "é"], [0.0, 1.0, 2.0, 3.0])
    table.lookup(block, starts, lengths)
    table.lookup(block, starts[:0], lengths[:0])
    CategoryTable([], []).lookup(block, starts, lengths)

    bodies = [b"", b"{}", b'{"a": [1, 2, {"b": "x\\"y"}], "c": "\\\\"}', b"[[[[[[", b"]]", b'"open']
    for body in [*bodies, b"[" * 40 + b"]" * 40, b'{"k": 1, "l": 2, "m": [3, 4]}' * 50]:
        json_shape(body, 32)


@pytest.fixture(scope="module")
def calls(artifact: ModelArtifact, dataset: TelcoDataset) -> list[Call]:
    with recording() as recorded:
        _exercise(artifact, dataset)
    return recorded


@pytest.fixture(scope="module")
def jit_results(calls: list[Call], tmp_path_factory: pytest.TempPathFactory) -> list[Call]:
    directory = tmp_path_factory.mktemp("kernel-calls")
    save(directory / "calls", calls)
    calls_file, results_file = str(directory / "calls"), str(directory / "results")
    result = subprocess.run(
        [sys.executable, "-m", "tests.unit.native.jit_reference", calls_file, results_file],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
        cwd=REPO,
        env={**os.environ, "CHURN_KERNELS": "jit"},
    )
    assert result.returncode == 0, result.stderr
    return load(directory / "results")


def _defined(name: str, values: list[Any]) -> list[Any]:
    """The values a kernel defines: _split_bytes leaves its arrays unset from the element it
    stops at (the third value, -1 when it read them all)."""
    if name == "kernels__split_bytes" and values[2] >= 0:
        return [values[0][: values[2]], values[1][: values[2]], *values[2:]]
    return values


def test_every_exported_kernel_is_exercised(calls: list[Call]) -> None:
    assert {name for name, _ in calls} == set(exported())


def test_the_extension_gives_what_the_jit_gives(calls: list[Call], jit_results: list[Call]) -> None:
    extension = require_compiled_kernels()
    assert [name for name, _ in jit_results] == [name for name, _ in calls]
    for (name, args), (_, expected) in zip(calls, jit_results, strict=True):
        got = _defined(name, replay(getattr(extension, name), args))
        expected = _defined(name, expected)
        assert len(got) == len(expected), name
        for position, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
            np.testing.assert_array_equal(mine, theirs, err_msg=f"{name}, value {position}")
            assert np.asarray(mine).dtype == np.asarray(theirs).dtype, (name, position)
