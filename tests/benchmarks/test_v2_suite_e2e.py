"""`python -m benchmarks v2` end to end, briefly: one real `churn-mlops serve --grpc-port`, every
workload measured without a failed request, the report's table and results written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.load import Wrk
from benchmarks.v2_suite import BATCH_WORKLOADS, SINGLE_WORKLOADS

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_v2_suite_measures_every_workload_without_a_failure(
    wrk: Wrk, tmp_path: Path, artifact_dir: Path
) -> None:
    out = tmp_path / "results"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "v2",
            "--connections",
            "4",
            "--grpc-processes",
            "1",
            "--batch-rows",
            "1000",
            "--batch-concurrency",
            "1",
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
    results = json.loads((out / "v2-results.json").read_text())
    runs = {run["workload"]: run for run in results["runs"]}
    assert set(runs) == {*SINGLE_WORKLOADS, *BATCH_WORKLOADS}
    for workload, run in runs.items():
        assert run["requests_per_s"] > 0, workload
        assert run["failures"] == 0, workload
    assert runs["v2-binary"]["rows_per_request"] == 1000
    assert runs["grpc"]["client_cpu_percent"] > 0
    assert runs["grpc-h2load"]["client"] == "h2load x1"
    report = completed.stdout
    assert "| V2 JSON infer, 1 row | wrk, 4 conc., 1 rows |" in report
    assert "of predict (>= 80%)" in report
    assert "rows/s" in report
    assert (out / "v2-report.md").read_text() == report
