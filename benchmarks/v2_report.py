"""The `v2` suite's report: medians over rounds of each workload, the ratios the issue sets
targets for, and every round's figures."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from benchmarks.constants import COMMAND

TARGETS: dict[str, tuple[str, str, float]] = {
    # workload: (what it is compared with, figure, at least)
    "v2-json": ("predict", "rps", 0.80),
    "grpc-h2load": ("predict", "rps", 0.50),
    "v2-binary": ("batch-json", "rows", 1_000_000.0),
}
"""What the issue asks of each V2 workload: a share of a baseline's RPS, or rows/s."""

LABELS = {
    "predict": "`POST /predict`, JSON, 1 row",
    "v2-json": "V2 JSON infer, 1 row",
    "grpc-h2load": "gRPC `ModelInfer`, 1 row (raw contents), h2load",
    "grpc": "gRPC `ModelInfer`, 1 row (raw contents), grpcio client",
    "batch-json": "`POST /predict/batch`, JSON",
    "v2-binary": "V2 binary infer (binary outputs)",
}


@dataclass(frozen=True)
class Measurement:
    """One measured run of one workload."""

    workload: str
    round: int
    requests_per_s: float
    rows_per_request: int
    p99_ms: float
    failures: int
    concurrency: int
    client: str
    """What sent the load: wrk, h2load, httpx or grpc.aio (with their processes)."""
    client_cpu_percent: float | None = None
    """The client's CPU over the run, in % of one core; None for wrk (not measured)."""

    @property
    def rows_per_s(self) -> float:
        return self.requests_per_s * self.rows_per_request


def _median(measurements: Sequence[Measurement], workload: str, pick: str) -> float:
    values = [getattr(m, pick) for m in measurements if m.workload == workload]
    return statistics.median(values) if values else 0.0


def _target(workload: str, medians: Mapping[str, Measurement]) -> str:
    if workload not in TARGETS:
        return ""
    baseline, figure, least = TARGETS[workload]
    mine = medians.get(workload)
    if mine is None:
        return ""
    if figure == "rows":
        met = mine.rows_per_s >= least
        return f"{'met' if met else 'MISSED'}: >= {least:,.0f} rows/s"
    base = medians.get(baseline)
    if base is None or base.requests_per_s <= 0:
        return f"-: >= {least:.0%} of {baseline}"
    share = mine.requests_per_s / base.requests_per_s
    return f"{'met' if share >= least else 'MISSED'}: {share:.1%} of {baseline} (>= {least:.0%})"


def medians(measurements: Sequence[Measurement]) -> dict[str, Measurement]:
    """Per workload, a Measurement of the medians of its rounds (round -1)."""
    result = {}
    for workload in dict.fromkeys(m.workload for m in measurements):
        runs = [m for m in measurements if m.workload == workload]
        cpu = [m.client_cpu_percent for m in runs if m.client_cpu_percent is not None]
        result[workload] = Measurement(
            workload=workload,
            round=-1,
            requests_per_s=_median(runs, workload, "requests_per_s"),
            rows_per_request=runs[0].rows_per_request,
            p99_ms=_median(runs, workload, "p99_ms"),
            failures=sum(m.failures for m in runs),
            concurrency=runs[0].concurrency,
            client=runs[0].client,
            client_cpu_percent=statistics.median(cpu) if cpu else None,
        )
    return result


def _ratio(mine: Measurement, medians_: Mapping[str, Measurement]) -> str:
    baseline = TARGETS.get(mine.workload, ("",))[0]
    base = medians_.get(baseline)
    if base is None or base.rows_per_s <= 0:
        return ""
    return f"{mine.rows_per_s / base.rows_per_s:.2f}x {baseline}"


def table(measurements: Sequence[Measurement]) -> list[str]:
    """The medians table, one line per workload."""
    by_workload = medians(measurements)
    lines = [
        "| workload | load | requests/s | rows/s | p99 ms | client CPU | vs | target | failed |",
        "|---|---|---:|---:|---:|---:|---|---|---:|",
    ]
    for workload, m in by_workload.items():
        cpu = "-" if m.client_cpu_percent is None else f"{m.client_cpu_percent:.0f} %"
        lines.append(
            f"| {LABELS.get(workload, workload)} | {m.client}, {m.concurrency} conc., "
            f"{m.rows_per_request:,} rows | {m.requests_per_s:,.0f} | {m.rows_per_s:,.0f} "
            f"| {m.p99_ms:.2f} | {cpu} | {_ratio(m, by_workload)} "
            f"| {_target(workload, by_workload)} | {m.failures:,} |"
        )
    return lines


def render(measurements: Sequence[Measurement], meta: Mapping[str, object]) -> str:
    """The whole report: what ran, the medians table, every round."""
    lines = [
        "## Open Inference Protocol (V2): REST JSON, REST binary and gRPC",
        "",
        f"`{meta.get('command', COMMAND + ' v2')}` - {meta.get('started', '')}, "
        f"{meta.get('rounds', '?')} round(s) of {meta.get('duration_s', '?')} s "
        f"(+{meta.get('warmup_s', '?')} s warm-up), model {meta.get('model_version', '?')}. "
        "One `churn-mlops serve --workers 2 --grpc-port N` (API key on every request, cache "
        "and prediction log off); the workloads of a round take turns going first. Medians "
        "of the rounds; client CPU in % of one core (the clients share the 2 cores).",
        "",
        *table(measurements),
        "",
        "Every round:",
        "",
        "| round | workload | requests/s | rows/s | p99 ms | failed |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for m in sorted(measurements, key=lambda m: (m.round, m.workload)):
        lines.append(
            f"| {m.round + 1} | {m.workload} | {m.requests_per_s:,.0f} | {m.rows_per_s:,.0f} "
            f"| {m.p99_ms:.2f} | {m.failures:,} |"
        )
    return "\n".join(lines) + "\n"
