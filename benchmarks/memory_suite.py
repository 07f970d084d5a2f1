"""What one pod's process costs in memory and in start-up time: the Kubernetes memory request
and the startup probe are set from these figures (docs/capacity.md, "Memory").

A pod runs `churn-mlops serve --workers 1` (deploy/k8s), one process that is the worker. The
suite starts it the same way, several times in turn: the first start may compile the numba
kernels into their cache, the later ones show a restart's time to ready with the cache warm.
After each start it reads the process's resident set (VmRSS, /proc) once ready, then again after
a bounded wrk load of distinct customers through every layer (auth, cache, batcher, log).
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.constants import DISTINCT_CUSTOMERS
from benchmarks.load import Wrk, prediction_bodies, write_bodies
from benchmarks.servers import (
    RunningServer,
    churn_service,
    group_members,
    provision_credentials,
    start_server,
)
from benchmarks.terminal import console
from churn_mlops.data import load_telco_csv

MIB = 1024 * 1024
# The request leaves the measured peak this share of room (allocator growth, a fuller L1 cache
# than the bench's distinct customers fill, a log buffer while the database is away).
REQUEST_HEADROOM = 1.5
# Requests are rounded up to this many MiB.
REQUEST_GRANULARITY_MIB = 64


@dataclass(frozen=True)
class MemoryRun:
    """One start of the service and what it measured."""

    start_to_ready_s: float
    rss_ready_mib: float
    rss_loaded_mib: float
    requests: int


def resident_mib(pid: int) -> float:
    """The process's resident set size (VmRSS) in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / MIB
    raise RuntimeError(f"no VmRSS for process {pid}")


def serving_pid(server: RunningServer) -> int:
    """The process answering requests: with one worker, uvicorn serves in the started process;
    with a supervisor (more workers), its largest child."""
    members = group_members(server.process.pid) or []
    live = [pid for pid, state, _ in members if state not in "ZX"]
    return max(live, key=resident_mib, default=server.process.pid)


def memory_request_mib(peak_mib: float) -> int:
    """The memory request for a measured peak: with headroom, rounded up."""
    step = REQUEST_GRANULARITY_MIB
    return math.ceil(peak_mib * REQUEST_HEADROOM / step) * step


def measure_memory(
    model_dir: Path, *, starts: int, connections: int, duration_s: int
) -> list[MemoryRun]:
    """`starts` starts of `churn-mlops serve --workers 1`, each loaded for `duration_s`."""
    runs: list[MemoryRun] = []
    with tempfile.TemporaryDirectory(prefix="churn-bench-memory-") as work_name:
        work = Path(work_name)
        wrk = Wrk(work)
        credentials = provision_credentials(work)
        bodies = write_bodies(
            work / "bodies.jsonl", prediction_bodies(load_telco_csv(), DISTINCT_CUSTOMERS)
        )
        spec = churn_service(model_dir, workers=1, name="one-worker", credentials=credentials)
        for number in range(1, starts + 1):
            began = time.monotonic()
            with start_server(spec, work / "logs") as server:
                ready_s = time.monotonic() - began
                pid = serving_pid(server)
                ready_mib = resident_mib(pid)
                result = wrk.run(
                    server.port,
                    "/predict",
                    bodies,
                    connections=connections,
                    duration_s=duration_s,
                    api_key=credentials.api_key,
                )
                loaded_mib = resident_mib(pid)
            runs.append(MemoryRun(ready_s, ready_mib, loaded_mib, result.requests))
            console.print(
                f"[{number}/{starts}] ready in {ready_s:.2f} s, RSS {ready_mib:.0f} MiB ready, "
                f"{loaded_mib:.0f} MiB after {result.requests:,} requests"
            )
    return runs


def report(runs: list[MemoryRun], *, connections: int, duration_s: int) -> list[str]:
    """The figures as markdown lines: each start, then the medians and the request."""
    lines = [
        f"`churn-mlops serve --workers 1`, {len(runs)} starts; each loaded with wrk "
        f"({connections} connections, {duration_s} s, {DISTINCT_CUSTOMERS:,} distinct customers, "
        "API key, cache and prediction log on).",
        "",
        "| start | start to ready s | RSS ready MiB | RSS after load MiB | requests |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {n} | {run.start_to_ready_s:.2f} | {run.rss_ready_mib:.0f} | "
        f"{run.rss_loaded_mib:.0f} | {run.requests:,} |"
        for n, run in enumerate(runs, 1)
    ]
    warm = runs[1:] or runs
    peak = max(run.rss_loaded_mib for run in runs)
    lines += [
        "",
        f"Start to ready with the numba cache warm (starts 2 on): median "
        f"{statistics.median(run.start_to_ready_s for run in warm):.2f} s.",
        f"RSS once ready: median {statistics.median(run.rss_ready_mib for run in runs):.0f} MiB; "
        f"after load: median {statistics.median(run.rss_loaded_mib for run in runs):.0f} MiB, "
        f"peak {peak:.0f} MiB.",
        f"Memory request for one worker per pod: {memory_request_mib(peak)}Mi "
        f"(the peak x {REQUEST_HEADROOM:g}, rounded up to {REQUEST_GRANULARITY_MIB} MiB).",
    ]
    return lines
