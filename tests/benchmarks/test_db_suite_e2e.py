"""`python -m benchmarks db` end to end, at a tiny size: seeds, serves, loads, reports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.postgres import fresh_postgres_database
from tests.fixtures.redis_server import in_ci

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]


def test_bench_db_suite_compares_the_listings(artifact_dir: Path, tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        if in_ci():
            pytest.fail("wrk is not installed (CI=true: the bench must run)")
        pytest.skip("wrk is not installed")
    out = tmp_path / "results"
    with fresh_postgres_database("churn_bench_test") as url:
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks",
                "db",
                "--url",
                url,
                "--customers",
                "300",
                "--predictions",
                "1000",
                "--connections",
                "4",
                "--duration",
                "1s",
                "--warmup",
                "0",
                "--rounds",
                "1",
                "--model-dir",
                str(artifact_dir),
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=200,
            check=False,
            cwd=REPO,
        )
    assert completed.returncode == 0, completed.stderr[-3000:]
    document = json.loads((out / "results.json").read_text())
    assert document["meta"]["customers"] == 300
    assert document["meta"]["predictions"] == 1000
    runs = {run["workload"]: run for run in document["runs"]}
    assert set(runs) == {"detail", "listing", "n-plus-one"}
    for run in runs.values():
        assert run["requests"] > 0
        assert run["non_2xx"] == 0
        # Every read costs the service and the database some CPU, read from /proc.
        assert run["service_cpu_us"] > 0
        assert run["database_cpu_us"] > 0
    report = (out / "report.md").read_text()
    assert "| GET /customers?limit=50 (1 statement) |" in report
    assert "| service CPU us/request | PostgreSQL CPU us/request |" in report
    assert "Listing, ours vs the seed's N+1:" in report
    assert report in completed.stdout
