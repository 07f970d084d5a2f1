"""The memory suite: a process's resident set read from /proc, the request derived from a peak,
and the command against a real one-worker `serve`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.load import Wrk
from benchmarks.memory_suite import (
    REQUEST_GRANULARITY_MIB,
    MemoryRun,
    memory_request_mib,
    report,
    resident_mib,
)

REPO = Path(__file__).resolve().parents[2]


def test_resident_mib_grows_with_memory_the_process_touches() -> None:
    before = resident_mib(os.getpid())
    block = bytearray(64 * 1024 * 1024)  # zero pages count once written
    block[::4096] = b"x" * len(block[::4096])
    after = resident_mib(os.getpid())
    del block
    assert before > 0
    assert after - before >= 60


@pytest.mark.parametrize(
    ("peak", "request_mib"), [(261.0, 448), (256.0, 384), (1.0, REQUEST_GRANULARITY_MIB)]
)
def test_memory_request_is_the_peak_with_headroom_rounded_up(peak: float, request_mib: int) -> None:
    assert memory_request_mib(peak) == request_mib


def test_report_takes_warm_starts_from_the_second_on() -> None:
    runs = [MemoryRun(9.0, 250, 260, 1_000), MemoryRun(2.0, 251, 255, 1_000)]
    lines = report(runs, connections=32, duration_s=10)
    assert "Start to ready with the numba cache warm (starts 2 on): median 2.00 s." in lines
    assert "RSS once ready: median 250 MiB; after load: median 258 MiB, peak 260 MiB." in lines
    assert lines[-1].startswith("Memory request for one worker per pod: 448Mi")


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_memory_command_measures_a_real_one_worker_service(wrk: Wrk, artifact_dir: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "memory",
            "--starts",
            "1",
            "--duration",
            "1s",
            "--connections",
            "4",
            "--model-dir",
            str(artifact_dir),
        ],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr
    [row] = [line for line in completed.stdout.splitlines() if line.startswith("| 1 |")]
    ready_s, ready_mib, loaded_mib, requests = (
        float(cell.replace(",", "")) for cell in row.strip("|").split("|")[1:]
    )
    assert 0 < ready_s < 120
    # A worker holds numpy, numba's kernels and the model: far more than an empty interpreter.
    assert 100 < ready_mib <= loaded_mib
    assert requests > 0
    assert "Memory request for one worker per pod: " in completed.stdout
