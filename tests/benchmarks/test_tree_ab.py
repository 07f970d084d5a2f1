"""`python -m benchmarks tree-ab`: the service from this tree against a baseline tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.load import Wrk
from benchmarks.tree_ab import (
    BASELINE,
    CURRENT,
    REPOSITORY,
    TreeABOptions,
    run_tree_ab_in_process,
    tree_specs,
)

pytestmark = [pytest.mark.timeout(300)]


def _options(baseline: Path, model_dir: Path) -> TreeABOptions:
    return TreeABOptions(baseline, model_dir, 1, 1, 0, (4,))


def test_tree_specs_put_each_tree_first_on_the_path_with_a_database_of_its_own(
    tmp_path: Path, artifact_dir: Path
) -> None:
    baseline = REPOSITORY / "src"
    specs = tree_specs(_options(baseline, artifact_dir), tmp_path)
    assert set(specs) == {BASELINE, CURRENT}
    paths = {name: spec.env["PYTHONPATH"].split(os.pathsep)[0] for name, spec in specs.items()}
    assert paths == {BASELINE: str(baseline.resolve()), CURRENT: str(REPOSITORY / "src")}
    databases = {spec.env["CHURN_DATABASE_URL"] for spec in specs.values()}
    assert len(databases) == 2
    for spec in specs.values():
        assert Path(spec.env["CHURN_DATABASE_URL"].removeprefix("sqlite:///")).is_file()
        assert spec.api_key
        assert spec.env["CHURN_CACHE_ENABLED"] == "false"
    assert specs[BASELINE].api_key == specs[CURRENT].api_key


def test_tree_specs_refuse_a_folder_that_is_not_a_source_tree(
    tmp_path: Path, artifact_dir: Path
) -> None:
    with pytest.raises(SystemExit, match="not a churn-mlops src"):
        tree_specs(_options(tmp_path, artifact_dir), tmp_path)


@pytest.mark.e2e
@pytest.mark.slow
def test_tree_ab_command_compares_two_trees_and_prints_their_ratio(
    wrk: Wrk, tmp_path: Path, artifact_dir: Path
) -> None:
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks", "tree-ab"),
            *("--baseline-src", str(REPOSITORY / "src")),
            *("--connections", "4", "--duration", "1s", "--warmup", "0", "--rounds", "1"),
            *("--model-dir", str(artifact_dir), "--out", str(tmp_path / "out")),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=REPOSITORY,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "### 4 connections" in completed.stdout
    assert "| baseline | " in completed.stdout
    assert "| current | " in completed.stdout
    assert "current / baseline: " in completed.stdout


@pytest.mark.slow
def test_tree_ab_in_process_times_both_paths_of_both_trees(artifact_dir: Path) -> None:
    options = TreeABOptions(REPOSITORY / "src", artifact_dir, 1, 1, 0, (4,))
    lines = run_tree_ab_in_process(options, requests=50, blocks=1)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert set(rows) == {"/predict", "/predict/batch"}
    for row in rows.values():
        baseline, current, ratio, pairs = (float(cell) for cell in row.strip("| ").split(" | ")[1:])
        assert baseline > 0
        assert current > 0
        assert ratio == pytest.approx(current / baseline, abs=0.001)
        assert pairs > 0
