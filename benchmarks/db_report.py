"""The db suite's report: medians per workload over the rounds, and how our listing compares
with the seed's N+1 listing of the same pages."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.constants import WORKERS
from benchmarks.load import LoadResult


@dataclass(frozen=True)
class DbRun:
    name: str
    label: str
    round: int
    result: LoadResult
    service_cpu_us: float = 0.0
    """The service's CPU microseconds per answered request (0 without /proc)."""
    database_cpu_us: float = 0.0
    """The local PostgreSQL's CPU microseconds per answered request (0 without /proc)."""


@dataclass(frozen=True)
class Summary:
    label: str
    rps: float
    p50: float
    p99: float
    failed: int
    rounds: int
    service_cpu_us: float = 0.0
    database_cpu_us: float = 0.0


def summarise(runs: Sequence[DbRun]) -> dict[str, Summary]:
    """Medians over the rounds, per workload."""
    by_name: dict[str, list[DbRun]] = {}
    for run in runs:
        by_name.setdefault(run.name, []).append(run)
    return {
        name: Summary(
            label=group[0].label,
            rps=statistics.median(r.result.rps for r in group),
            p50=statistics.median(r.result.latency_ms["p50"] for r in group),
            p99=statistics.median(r.result.latency_ms["p99"] for r in group),
            failed=sum(r.result.failed for r in group),
            rounds=len(group),
            service_cpu_us=statistics.median(r.service_cpu_us for r in group),
            database_cpu_us=statistics.median(r.database_cpu_us for r in group),
        )
        for name, group in by_name.items()
    }


@dataclass(frozen=True)
class DbReportMeta:
    """How the suite ran, for the report's first lines."""

    started: str
    command: str
    connections: int
    rounds: int
    warmup_s: int
    duration_s: int


def markdown(
    summaries: dict[str, Summary],
    meta: DbReportMeta,
    sizes: tuple[int, int],
    round_ratios: Sequence[float] = (),
) -> str:
    lines = [
        f"DB bench, {meta.started}: PostgreSQL with {sizes[0]:,} customers and {sizes[1]:,} "
        f"predictions; {WORKERS} uvicorn workers, wrk c={meta.connections}, "
        f"{meta.rounds} rounds of {meta.warmup_s}+{meta.duration_s} s, medians.",
        "",
        f"Command: `{meta.command}`",
        "",
        "| workload | req/s | p50 ms | p99 ms | failed | service CPU us/request "
        "| PostgreSQL CPU us/request |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for summary in summaries.values():
        lines.append(
            f"| {summary.label} | {summary.rps:,.1f} | {summary.p50:.2f} | {summary.p99:.2f} "
            f"| {summary.failed:,} | {summary.service_cpu_us:,.1f} "
            f"| {summary.database_cpu_us:,.1f} |"
        )
    ours, seed_listing = summaries.get("listing"), summaries.get("n-plus-one")
    if ours and seed_listing and seed_listing.rps > 0 and ours.p99 > 0:
        lines += [
            "",
            f"Listing, ours vs the seed's N+1: **{ours.rps / seed_listing.rps:.1f}x** the "
            f"requests per second, p99 {seed_listing.p99 / ours.p99:.1f}x lower (medians).",
        ]
        if round_ratios:
            shown = ", ".join(f"{ratio:.1f}x" for ratio in round_ratios)
            lines.append(
                f"Per round (both back to back): {shown}; median "
                f"{statistics.median(round_ratios):.1f}x."
            )
    return "\n".join(lines) + "\n"


def listing_ratios(runs: Sequence[DbRun]) -> list[float]:
    """Ours over the seed's requests per second, in each round where both ran."""
    rps = {(run.name, run.round): run.result.rps for run in runs}
    rounds = sorted({run.round for run in runs})
    return [
        rps[("listing", r)] / rps[("n-plus-one", r)]
        for r in rounds
        if rps.get(("n-plus-one", r)) and ("listing", r) in rps
    ]
