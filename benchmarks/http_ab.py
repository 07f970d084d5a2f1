"""The HTTP A/B driver: two or more configurations of `churn-mlops serve`, up side by side and
loaded in turn by wrk, so that the machine's drift hits all of them alike.

In each round every server is measured back to back at each connection level, the one going
first rotating (A B, B A, ...); each run gets its warm-up, and every server is left to drain what
wrk left queued before the next run starts. Besides wrk's figures, each run records the
server's own CPU time per answered request (its process group's, from /proc): far steadier
than RPS on a shared machine. The local PostgreSQL's CPU per request is read beside it, from
the load's start until the server is idle again (a log flushed after the load included).
"""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from benchmarks.constants import REQUEST_TIMEOUT_S, WRK_THREADS
from benchmarks.inprocess import turns
from benchmarks.load import LoadResult, Wrk, write_bodies
from benchmarks.servers import (
    RunningServer,
    ServerSpec,
    group_members,
    postgres_cpu_seconds,
    start_server,
    wait_until_idle,
)
from benchmarks.terminal import log


@dataclass(frozen=True)
class ABRun:
    """One measured run of one server."""

    server: str
    connections: int
    round: int
    result: LoadResult
    cpu_us: float
    """The server's CPU microseconds per answered request (0 without /proc)."""
    warmup_requests: int = 0
    database_cpu_us: float = 0.0
    """The local PostgreSQL's CPU microseconds per answered request (0 without /proc)."""

    @property
    def answered(self) -> int:
        """Answers, warm-up included: what the server did (and logged, say)."""
        return self.result.requests + self.warmup_requests


def ab_plan(
    servers: Sequence[str], connections: Sequence[int], rounds: int
) -> list[tuple[str, int, int]]:
    """(server, connections, round) in order: the servers back to back, the first rotating."""
    runs: list[tuple[str, int, int]] = []
    turn = 0
    for round_ in range(rounds):
        for count in connections:
            runs.extend((server, count, round_) for server in turns(list(servers), turn))
            turn += 1
    return runs


def cpu_seconds(server: RunningServer) -> float:
    """CPU time the server's processes (master and workers) used so far; 0 without /proc."""
    members = group_members(server.process.pid) or []
    return sum(ticks for _, _, ticks in members) / os.sysconf("SC_CLK_TCK")


def load_with_cpu(
    server: RunningServer, load: Callable[[], LoadResult]
) -> tuple[LoadResult, float, float]:
    """`load`'s result, the server's and the local PostgreSQL's CPU microseconds per answered
    request. The server's is read before it drains what wrk left queued, which no answer
    counted; PostgreSQL's once the server is idle again (a log flushed after the load)."""
    before, database_before = cpu_seconds(server), postgres_cpu_seconds()
    result = load()
    answered = max(result.requests, 1)
    cpu_us = (cpu_seconds(server) - before) / answered * 1e6
    wait_until_idle(server)
    return result, cpu_us, (postgres_cpu_seconds() - database_before) / answered * 1e6


def run_ab(
    wrk: Wrk,
    servers: Mapping[str, RunningServer],
    bodies: Path,
    *,
    connections: Sequence[int],
    rounds: int,
    duration_s: int,
    warmup_s: int,
    log: Callable[[str], None],
) -> list[ABRun]:
    """Every run of the plan, each server sent its own API key (if it has one)."""
    runs: list[ABRun] = []
    for name, count, round_ in ab_plan(list(servers), connections, rounds):
        server = servers[name]

        def load(seconds: int, server: RunningServer = server, count: int = count) -> LoadResult:
            return wrk.run(
                server.port,
                "/predict",
                bodies,
                connections=count,
                threads=WRK_THREADS,
                duration_s=seconds,
                timeout_s=REQUEST_TIMEOUT_S,
                api_key=server.spec.api_key,
            )

        warmup_requests = 0
        if warmup_s:
            warmup_requests = load(warmup_s).requests
            wait_until_idle(server)
        result, cpu_us, database_us = load_with_cpu(server, lambda: load(duration_s))
        runs.append(
            ABRun(name, count, round_, result, cpu_us, warmup_requests, database_cpu_us=database_us)
        )
        latency = result.latency_ms
        log(
            f"round {round_ + 1} {name:<12} c={count:<4} {result.rps:>9,.1f} req/s  "
            f"p50 {latency['p50']:.2f} ms  p99 {latency['p99']:.2f} ms  "
            f"failed {result.failed:,}  server CPU {cpu_us:.1f} us/req  "
            f"PostgreSQL CPU {database_us:.1f} us/req"
        )
    return runs


def run_servers_ab(
    specs: Mapping[str, ServerSpec],
    log_dir: Path,
    bodies: Sequence[bytes],
    *,
    connections: Sequence[int],
    rounds: int,
    duration_s: int,
    warmup_s: int,
) -> list[ABRun]:
    """Start every server of `specs` (logs in `log_dir`), run the A/B with `bodies`, stop them."""
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as work_name, ExitStack() as stack:
        work = Path(work_name)
        servers = {
            name: stack.enter_context(start_server(spec, log_dir)) for name, spec in specs.items()
        }
        return run_ab(
            Wrk(work),
            servers,
            write_bodies(work / "bodies.jsonl", bodies),
            connections=connections,
            rounds=rounds,
            duration_s=duration_s,
            warmup_s=warmup_s,
            log=log,
        )


def median_of(runs: Sequence[ABRun], server: str, pick: Callable[[ABRun], float]) -> float:
    return statistics.median(pick(run) for run in runs if run.server == server)


def ab_table(runs: Sequence[ABRun], first: str, second: str) -> list[str]:
    """Medians per server, and the ratio of `first`'s RPS and CPU to `second`'s."""
    lines = [
        "| server | median RPS | median p50 ms | median p99 ms | median server CPU us/request "
        "| median local PostgreSQL CPU us/request | runs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for server in dict.fromkeys(run.server for run in runs):
        lines.append(
            f"| {server} | {median_of(runs, server, lambda r: r.result.rps):,.0f} "
            f"| {median_of(runs, server, lambda r: r.result.latency_ms['p50']):.2f} "
            f"| {median_of(runs, server, lambda r: r.result.latency_ms['p99']):.2f} "
            f"| {median_of(runs, server, lambda r: r.cpu_us):.1f} "
            f"| {median_of(runs, server, lambda r: r.database_cpu_us):.1f} "
            f"| {sum(run.server == server for run in runs)} |"
        )
    rps = [median_of(runs, name, lambda r: r.result.rps) for name in (first, second)]
    cpu = [median_of(runs, name, lambda r: r.cpu_us) for name in (first, second)]
    ratio = f"{rps[0] / rps[1]:.3f}" if rps[1] > 0 else "-"
    share = f" ({(cpu[0] / cpu[1] - 1) * 100:+.1f} %)" if cpu[1] > 0 else ""
    lines += [
        "",
        f"{first} / {second}: {ratio} of the RPS; {cpu[0] - cpu[1]:+.1f} us of server CPU per "
        f"request{share}.",
    ]
    return lines
