"""`churn-mlops profile`, run in-process on a small workload."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from churn_mlops.cli import app
from churn_mlops.observability.cli import top_functions


@dataclass
class Frame:
    function: str
    file_path_short: str
    line_no: int
    total_self_time: float
    time: float
    children: list[Frame] = field(default_factory=list)


def test_top_functions_ranks_by_own_time_and_counts_recursion_once() -> None:
    leaf = Frame("score", "model.py", 3, 0.5, 0.5)
    inner = Frame("walk", "tree.py", 1, 0.1, 0.6, [leaf])
    outer = Frame("walk", "tree.py", 1, 0.2, 0.9, [inner, Frame("[await]", "", 0, 0.1, 0.1)])
    rows = top_functions(Frame("main", "app.py", 9, 0.0, 1.0, [outer]), limit=2)
    assert [(r.function, r.self_seconds) for r in rows] == [
        ("score", 0.5),
        ("walk", pytest.approx(0.3)),
    ]
    assert rows[1].total_seconds == 0.9  # the outer call only


@pytest.mark.timeout(300)
def test_profile_command_writes_a_report_and_lists_functions(
    artifact_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "profile.html"
    result = CliRunner().invoke(
        app,
        [
            "profile",
            "--model-dir",
            str(artifact_dir),
            "--requests",
            "200",
            "--batch-rows",
            "50",
            "--out",
            str(out),
            "--top",
            "5",
            "--memory",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "pyinstrument" in out.read_text()
    assert "Top 5 functions by own time" in result.output
    assert "200 single predictions and 4 batches of 50 rows" in result.output
    assert "Top 5 allocations held at the end of the run" in result.output


def test_profile_help_describes_the_command() -> None:
    result = CliRunner().invoke(app, ["profile", "--help"])
    assert result.exit_code == 0
    assert "pyinstrument" in result.output
    assert "--memory" in result.output
