"""What a service or cache run measured: its runs, their summaries over the rounds, the SLO and
cost figures, and the helpers every table of the report uses."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.load import LoadResult
from benchmarks.plan import ALL_SERVERS, CACHE_SCENARIOS, Run

LABELS = {
    "production": "production configuration",
    "naive": "naive baseline",
    "service": "churn-mlops service",
    "fastapi": "bare FastAPI (ceiling)",
    "asgi": "raw ASGI (ceiling)",
    "cache-l1": "service with cache L1",
    "cache-l2": "service with cache L1 + L2",
}
# The cache suite compares three configurations of the same service.
CACHE_LABELS = {"service": "cache off", "cache-l1": "L1 only", "cache-l2": "L1 + L2 (Redis)"}
WORKLOADS = {"hit": "hit path", "mixed": "mixed"}


@dataclass(frozen=True)
class Measurement:
    """One run and what wrk measured in it."""

    run: Run
    result: LoadResult


@dataclass(frozen=True)
class BenchMeta:
    """How the bench was run: printed above the tables and stored with the results."""

    started: str
    command: str
    duration_s: int
    warmup_s: int
    rounds: int
    workers: int
    cores: int
    price_per_core_hour: float
    wrk_version: str = ""
    model_version: str | None = None
    service_env: dict[str, str] = field(default_factory=dict)
    warm_customers: int | None = None
    """Cache suite: distinct customers of the hit path."""
    redis_url: str | None = None
    redis_key_prefix: str | None = None
    redis_keys_removed: int | None = None
    """Keys under the bench's prefix deleted after the servers stopped; None if not cleaned."""


@dataclass(frozen=True)
class CacheSnapshot:
    """What `GET /cache/stats` said of each worker of a server reached, at one moment."""

    server: str
    moment: str
    workers: list[dict[str, Any]]


@dataclass(frozen=True)
class Summary:
    """All rounds of one (scenario, server, connections, rows): medians, and summed counts."""

    scenario: str
    server: str
    connections: int
    rows: int
    rounds: int
    rps: float
    latency_ms: dict[str, float]
    requests: int
    failed: int
    attempts: int
    statuses: dict[int, int]
    cached: int = 0
    """Answers that came from the prediction cache, summed over rounds."""
    hit_ratio: float | None = None
    """Cache scenarios: the target share of warm requests."""

    @property
    def cached_ratio(self) -> float:
        return self.cached / self.requests if self.requests else 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rps * self.rows

    @property
    def error_rate(self) -> float:
        return self.failed / self.attempts if self.attempts else 1.0


# The course chapter's performance targets ("Performance Metrics" table).
# A run without answers has no latencies, and meets no latency target.
SLO: tuple[tuple[str, Callable[[Summary], bool]], ...] = (
    ("P50 < 100 ms", lambda s: s.requests > 0 and s.latency_ms["p50"] < 100),
    ("P95 < 500 ms", lambda s: s.requests > 0 and s.latency_ms["p95"] < 500),
    ("P99 < 1 s", lambda s: s.requests > 0 and s.latency_ms["p99"] < 1000),
    ("> 100 RPS", lambda s: s.rps > 100),
    ("< 0.1 % errors", lambda s: s.error_rate < 0.001),
)


def slo_check(summary: Summary) -> dict[str, bool]:
    """Each SLO target and whether this summary meets it."""
    return {label: met(summary) for label, met in SLO}


def cost_per_million(rps: float, cores: int, price_per_core_hour: float) -> float | None:
    """USD per million requests if `cores` cores answer `rps` requests a second all hour long."""
    return price_per_core_hour * cores / 3600 / rps * 1e6 if rps > 0 else None


def summarise(measurements: Sequence[Measurement]) -> list[Summary]:
    """One summary per (scenario, server, connections, rows), ordered for side-by-side tables."""
    groups: dict[tuple[str, str, int, int], list[LoadResult]] = {}
    targets: dict[tuple[str, str, int, int], float | None] = {}
    for m in measurements:
        key = (m.run.scenario, m.run.server, m.run.connections, m.run.rows)
        groups.setdefault(key, []).append(m.result)
        targets.setdefault(key, m.run.hit_ratio)
    summaries = []
    for (scenario, server, connections, rows), results in groups.items():
        statuses: dict[int, int] = {}
        for result in results:
            for status, count in result.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        summaries.append(
            Summary(
                scenario=scenario,
                server=server,
                connections=connections,
                rows=rows,
                rounds=len(results),
                rps=statistics.median(r.rps for r in results),
                latency_ms={
                    name: statistics.median(r.latency_ms[name] for r in results)
                    for name in results[0].latency_ms
                },
                requests=sum(r.requests for r in results),
                failed=sum(r.failed for r in results),
                attempts=sum(r.attempts for r in results),
                statuses=dict(sorted(statuses.items())),
                cached=sum(r.cached for r in results),
                hit_ratio=targets[(scenario, server, connections, rows)],
            )
        )
    return sorted(summaries, key=_table_order)


def _table_order(summary: Summary) -> tuple[int, int, int, int]:
    servers = list(ALL_SERVERS)
    server = servers.index(summary.server) if summary.server in servers else len(servers)
    scenarios = ("predict", "batch", "overload", *CACHE_SCENARIOS)
    return (scenarios.index(summary.scenario), summary.rows, summary.connections, server)


def find(
    summaries: Sequence[Summary], scenario: str, server: str, connections: int, rows: int
) -> Summary | None:
    for s in summaries:
        if (s.scenario, s.server, s.connections, s.rows) == (scenario, server, connections, rows):
            return s
    return None


def ratio(value: float, reference: Summary | None, *, percent: bool = False) -> str:
    if reference is None or reference.rps <= 0:
        return "-"
    ratio = value / reference.rps
    return f"{ratio:.0%}" if percent else f"{ratio:.2f}x"


def latencies(summary: Summary, *names: str) -> list[str]:
    if summary.requests == 0:
        return ["-"] * len(names)
    return [f"{summary.latency_ms[name]:.2f}" for name in names]


def slo_cell(summary: Summary) -> str:
    missed = [label for label, met in slo_check(summary).items() if not met]
    return "met" if not missed else "missed " + ", ".join(missed)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    # Text columns (the server, the workload, the SLO verdict ...) left, figures right.
    align = ["---" if name in ("server", "SLO", "workload", "when") else "---:" for name in header]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines
