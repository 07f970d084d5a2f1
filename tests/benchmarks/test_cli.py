from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.cli import app

REPO = Path(__file__).resolve().parents[2]
SUITES = ("service", "cache", "db", "auth", "capacity")
IN_PROCESS = ("cache-cpu", "db-cpu", "prediction-log-ab", "metrics-ab", "shadow-ab")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["service", "--only", "naive,nginx"], "unknown server(s) nginx"),
        (["service", "--connections", "1,0"], "give positive integers like 1,32,128"),
        (["service", "--connections", "many"], "give positive integers like 1,32,128"),
        (["service", "--duration", "0s"], "runs last at least 1s"),
        (["service", "--warmup", "soon"], "'soon' is not a duration like 10s, 2m or 1h"),
        (
            ["service", "--service-env", "CHURN_CACHE_ENABLED"],
            "'CHURN_CACHE_ENABLED' is not KEY=VALUE",
        ),
        (["warm"], "No such command 'warm'"),
        (["cache", "--cache-connections", "32,0"], "give positive integers like 1,32,128"),
        (["cache", "--hit-ratio", "1.5"], "Input should be less than or equal to 1"),
        (
            ["cache", "--service-env", "CHURN_CACHE_ENABLED=true"],
            "the cache suite needs the cache off",
        ),
        (
            ["service", "--with-cache", "--service-env", "CHURN_CACHE_ENABLED=true"],
            "the cache suite needs the cache off",
        ),
        (["cache", "--only", "asgi"], "nothing to run"),
        (["db", "--url", "sqlite:///bench.db"], "the db suite measures PostgreSQL"),
        (["auth", "--connections", "0"], "give positive integers like 1,32,128"),
    ],
)
def test_bench_refuses_bad_options_before_starting_anything(
    arguments: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_help_lists_every_suite_as_a_subcommand() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    listed = {line.split()[1] for line in result.output.splitlines() if line.startswith("│ ")}
    assert set(SUITES + IN_PROCESS) <= listed


def test_python_m_benchmarks_runs_from_the_repository_root() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr
    assert "python -m benchmarks" in completed.stdout


def test_the_product_never_imports_the_harness() -> None:
    """`churn-mlops` (the CLI, the app) starts without `benchmarks` or `httpx`."""
    probe = (
        "import sys, churn_mlops.cli, churn_mlops.api.app; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('benchmarks', 'httpx')))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
