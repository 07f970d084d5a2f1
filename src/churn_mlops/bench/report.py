"""Bench results as JSON, a markdown report with the course's SLO check, and a latency plot."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from churn_mlops.bench.load import LoadResult
from churn_mlops.bench.plan import SERVERS, Run

LABELS = {
    "naive": "naive baseline",
    "service": "churn-mlops service",
    "fastapi": "bare FastAPI (ceiling)",
    "asgi": "raw ASGI (ceiling)",
}


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
    for m in measurements:
        key = (m.run.scenario, m.run.server, m.run.connections, m.run.rows)
        groups.setdefault(key, []).append(m.result)
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
            )
        )
    return sorted(summaries, key=_table_order)


def _table_order(summary: Summary) -> tuple[int, int, int, int]:
    servers = list(SERVERS)
    server = servers.index(summary.server) if summary.server in servers else len(servers)
    scenarios = ("predict", "batch", "overload")
    return (scenarios.index(summary.scenario), summary.rows, summary.connections, server)


def _find(
    summaries: Sequence[Summary], scenario: str, server: str, connections: int, rows: int
) -> Summary | None:
    for s in summaries:
        if (s.scenario, s.server, s.connections, s.rows) == (scenario, server, connections, rows):
            return s
    return None


def _ratio(value: float, reference: Summary | None, *, percent: bool = False) -> str:
    if reference is None or reference.rps <= 0:
        return "-"
    ratio = value / reference.rps
    return f"{ratio:.0%}" if percent else f"{ratio:.2f}x"


def _latencies(summary: Summary, *names: str) -> list[str]:
    if summary.requests == 0:
        return ["-"] * len(names)
    return [f"{summary.latency_ms[name]:.2f}" for name in names]


def _slo_cell(summary: Summary) -> str:
    missed = [label for label, met in slo_check(summary).items() if not met]
    return "met" if not missed else "missed " + ", ".join(missed)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    # Text columns (the server, the SLO verdict) left, figures right.
    align = ["---" if name in ("server", "SLO") else "---:" for name in header]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def _predict_table(summaries: Sequence[Summary], meta: BenchMeta) -> list[str]:
    def versus(s: Summary, server: str, *, percent: bool = False) -> str:
        return _ratio(s.rps, _find(summaries, "predict", server, s.connections, 1), percent=percent)

    rows = []
    for s in summaries:
        if s.scenario != "predict":
            continue
        cost = cost_per_million(s.rps, meta.cores, meta.price_per_core_hour)
        rows.append(
            [
                LABELS.get(s.server, s.server),
                str(s.connections),
                f"{s.rps:,.0f}",
                *_latencies(s, "p50", "p95", "p99", "p99.9"),
                f"{s.failed:,}",
                versus(s, "naive"),
                versus(s, "fastapi", percent=True),
                versus(s, "asgi", percent=True),
                "-" if cost is None else f"{cost:.3f}",
                _slo_cell(s),
            ]
        )
    header = "server|connections|RPS|p50 ms|p95 ms|p99 ms|p99.9 ms|errors|vs naive"
    header += "|of FastAPI ceiling|of ASGI ceiling|USD per 1M requests|SLO"
    return ["", "## POST /predict", "", *_table(header.split("|"), rows)] if rows else []


def _batch_table(summaries: Sequence[Summary]) -> list[str]:
    rows = [
        [
            LABELS.get(s.server, s.server),
            f"{s.rows:,}",
            str(s.connections),
            f"{s.rps:,.1f}",
            f"{s.rows_per_s:,.0f}",
            *_latencies(s, "p50", "p99"),
            f"{s.failed:,}",
            _ratio(s.rps, _find(summaries, "batch", "naive", s.connections, s.rows)),
        ]
        for s in summaries
        if s.scenario == "batch"
    ]
    header = "server|rows/request|connections|requests/s|rows/s|p50 ms|p99 ms|errors|vs naive"
    return ["", "## POST /predict/batch", "", *_table(header.split("|"), rows)] if rows else []


def _overload_table(summaries: Sequence[Summary]) -> list[str]:
    rows = [
        [
            LABELS.get(s.server, s.server),
            str(s.connections),
            f"{s.rps:,.0f}",
            f"{s.statuses.get(503, 0):,}",
            *_latencies(s, "p50", "p99", "p99.9", "max"),
            f"{s.failed:,}",
            _slo_cell(s),
        ]
        for s in summaries
        if s.scenario == "overload"
    ]
    header = "server|connections|RPS|503s|p50 ms|p99 ms|p99.9 ms|max ms|errors|SLO"
    return ["", "## Overload: POST /predict", "", *_table(header.split("|"), rows)] if rows else []


def markdown(summaries: Sequence[Summary], meta: BenchMeta) -> str:
    """The report: how it was run, one table per scenario, the SLO legend."""
    setup = (
        f"`{meta.command}`: {meta.workers} uvicorn workers per server on {meta.cores} cores "
        f"shared with {meta.wrk_version or 'wrk'}; {meta.duration_s} s per run after a "
        f"{meta.warmup_s} s warm-up; {meta.rounds} round(s), medians over rounds"
    )
    if meta.model_version:
        setup += f"; model {meta.model_version}"
    if meta.service_env:
        setup += "; service with " + " ".join(
            f"{k}={v}" for k, v in sorted(meta.service_env.items())
        )
    setup += f"; cost at {meta.price_per_core_hour} USD per core-hour for {meta.cores} cores."
    lines = [
        f"# churn-mlops bench, {meta.started}",
        "",
        setup,
        *_predict_table(summaries, meta),
        *_batch_table(summaries),
        *_overload_table(summaries),
        "",
        "Errors are answers other than 2xx plus wrk's connect, read, write and timeout errors. "
        "SLO targets (course chapter): " + ", ".join(label for label, _ in SLO) + ".",
    ]
    return "\n".join(lines) + "\n"


def results_document(
    meta: BenchMeta, measurements: Sequence[Measurement], summaries: Sequence[Summary]
) -> dict[str, Any]:
    """Everything measured, JSON-ready: the raw runs and their summaries."""
    return {
        "meta": asdict(meta),
        "runs": [{**asdict(m.run), "result": m.result.to_dict()} for m in measurements],
        "summaries": [
            {
                **{k: v for k, v in asdict(s).items() if k != "statuses"},
                "statuses": {str(status): count for status, count in s.statuses.items()},
                "rows_per_s": s.rows_per_s,
                "error_rate": s.error_rate,
                "usd_per_million_requests": cost_per_million(
                    s.rps, meta.cores, meta.price_per_core_hour
                ),
                "slo": slo_check(s),
            }
            for s in summaries
        ],
    }


def plot(summaries: Sequence[Summary], path: Path) -> Path | None:
    """RPS and p99 per server against connections, for `/predict`; None if nothing to plot."""
    single = [s for s in summaries if s.scenario == "predict"]
    if not single:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (rps_axes, p99_axes) = pyplot.subplots(1, 2, figsize=(11, 4.5))
    for server in dict.fromkeys(s.server for s in single):
        # A run without answers has no point on a log scale.
        points = sorted(
            (s for s in single if s.server == server and s.requests > 0),
            key=lambda s: s.connections,
        )
        x = [s.connections for s in points]
        label = LABELS.get(server, server)
        rps_axes.plot(x, [s.rps for s in points], marker="o", label=label)
        p99_axes.plot(x, [s.latency_ms["p99"] for s in points], marker="o", label=label)
    levels = sorted({s.connections for s in single})
    for axes, title, unit in (
        (rps_axes, "throughput", "requests/s"),
        (p99_axes, "p99 latency", "ms"),
    ):
        axes.set_title(f"POST /predict: {title}")
        axes.set_xlabel("connections")
        axes.set_ylabel(unit)
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xticks(levels, labels=[str(level) for level in levels])
        axes.minorticks_off()
        axes.grid(True, alpha=0.3)
    p99_axes.axhline(1000, color="grey", linestyle="--", linewidth=1, label="SLO: p99 < 1 s")
    rps_axes.legend(fontsize="small")
    p99_axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return path


def write_results(
    out: Path, meta: BenchMeta, measurements: Sequence[Measurement]
) -> tuple[list[Summary], str]:
    """results.json, report.md and latency.png in `out`; the summaries and the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    summaries = summarise(measurements)
    report = markdown(summaries, meta)
    (out / "results.json").write_text(
        json.dumps(results_document(meta, measurements, summaries), indent=2) + "\n"
    )
    (out / "report.md").write_text(report)
    plot(summaries, out / "latency.png")
    return summaries, report
