"""Bench results as JSON, a markdown report with the course's SLO check, and a latency plot."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from churn_mlops.bench.load import LoadResult
from churn_mlops.bench.plan import ALL_SERVERS, CACHE_SCENARIOS, Run

LABELS = {
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
    # Text columns (the server, the workload, the SLO verdict ...) left, figures right.
    align = ["---" if name in ("server", "SLO", "workload", "when") else "---:" for name in header]
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


# The course chapter's cost target ("Performance Metrics" table).
COST_TARGET_USD_PER_MILLION = 1.0


def _cost_summary(summaries: Sequence[Summary], meta: BenchMeta) -> list[str]:
    """The cost per million requests of the service's best /predict run, from its RPS per core."""
    runs = [s for s in summaries if s.scenario == "predict" and s.server == "service" and s.rps > 0]
    if not runs:
        return []
    best = max(runs, key=lambda s: s.rps)
    cost = cost_per_million(best.rps, meta.cores, meta.price_per_core_hour)
    verdict = "met" if cost is not None and cost < COST_TARGET_USD_PER_MILLION else "missed"
    return [
        "",
        f"Cost: the service's best `/predict` run ({best.connections} connections) answered "
        f"{best.rps:,.0f} requests/s on {meta.cores} cores, {best.rps / meta.cores:,.0f} per "
        f"core; at {meta.price_per_core_hour} USD per core-hour that is **{cost:.4f} USD per "
        f"million requests** (target < {COST_TARGET_USD_PER_MILLION:g} USD: {verdict}).",
    ]


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


def _share(ratio: float) -> str:
    """A percentage that shows 0 % and 100 % only when exact."""
    text = f"{ratio:.1%}"
    if text == "100.0%" and ratio < 1:
        return ">99.9%"
    if text == "0.0%" and ratio > 0:
        return "<0.1%"
    return text


def _cache_table(
    summaries: Sequence[Summary], meta: BenchMeta, snapshots: Sequence[CacheSnapshot]
) -> list[str]:
    rows = []
    for s in summaries:
        if s.scenario not in CACHE_SCENARIOS:
            continue
        reference = _find(summaries, s.scenario, "service", s.connections, s.rows)
        rows.append(
            [
                WORKLOADS[s.scenario],
                CACHE_LABELS.get(s.server, s.server),
                str(s.connections),
                "-" if s.hit_ratio is None else f"{s.hit_ratio:.0%}",
                _share(s.cached_ratio) if s.requests else "-",
                f"{s.rps:,.0f}",
                *_latencies(s, "p50", "p99"),
                f"{s.failed:,}",
                _ratio(s.rps, reference),
            ]
        )
    if not rows:
        return []
    intro = (
        f"The hit path cycles through {meta.warm_customers or 'a few'} customers sent to every "
        "cache server before its first run; the mixed workload interleaves them with customers "
        "never sent before, in the target proportion. Observed hits: answers marked "
        '`"cached": true`.'
    )
    if meta.redis_url:
        intro += f" L2: {meta.redis_url}, keys under `{meta.redis_key_prefix}:`"
        intro += (
            "."
            if meta.redis_keys_removed is None
            else f", {meta.redis_keys_removed:,} of them deleted after the run."
        )
        intro += _redis_trouble(snapshots)
    header = "workload|server|connections|target hits|observed hits|RPS|p50 ms|p99 ms|errors"
    header += "|vs cache off"
    return [
        "",
        "## POST /predict with the prediction cache",
        "",
        intro,
        "",
        *_table(header.split("|"), rows),
    ]


def _worker_sum(workers: Sequence[dict[str, Any]], level: str, name: str) -> int:
    return sum(int(worker[level][name]) for worker in workers)


def _enabled_workers(snapshot: CacheSnapshot) -> list[dict[str, Any]]:
    return [worker for worker in snapshot.workers if worker.get("enabled")]


def _stats_table(snapshots: Sequence[CacheSnapshot], meta: BenchMeta) -> list[str]:
    rows = []
    for snapshot in snapshots:
        workers = _enabled_workers(snapshot)
        if not workers:
            continue
        lookups = _worker_sum(workers, "l1", "hits") + _worker_sum(workers, "l1", "misses")
        hits = _worker_sum(workers, "l1", "hits") + _worker_sum(workers, "l2", "hits")
        l2 = all(worker["l2"]["enabled"] for worker in workers)
        rows.append(
            [
                CACHE_LABELS.get(snapshot.server, snapshot.server),
                snapshot.moment,
                f"{len(workers)} of {meta.workers}",
                ", ".join(f"{worker['l1']['size']:,}" for worker in workers),
                f"{_worker_sum(workers, 'l1', 'hits'):,}",
                f"{_worker_sum(workers, 'l1', 'misses'):,}",
                f"{_worker_sum(workers, 'l2', 'hits'):,}" if l2 else "-",
                f"{sum(int(worker['computed']) for worker in workers):,}",
                _share(hits / lookups) if lookups else "-",
            ]
        )
    if not rows:
        return []
    header = "server|when|workers reached|L1 entries per worker|L1 hits|L1 misses|L2 hits"
    header += "|computed|hit rate"
    return [
        "",
        "## GET /cache/stats",
        "",
        "Counters since each worker started, summed over the workers reached.",
        "",
        *_table(header.split("|"), rows),
        *_redis_table(snapshots),
    ]


def _redis_table(snapshots: Sequence[CacheSnapshot]) -> list[str]:
    rows = []
    for snapshot in snapshots:
        workers = [w for w in _enabled_workers(snapshot) if w["l2"]["enabled"]]
        if not workers:
            continue
        rows.append(
            [
                CACHE_LABELS.get(snapshot.server, snapshot.server),
                snapshot.moment,
                *(
                    f"{_worker_sum(workers, 'l2', name):,}"
                    for name in ("hits", "misses", "written", "failed_writes", "dropped_writes")
                ),
                *(
                    f"{_worker_sum(workers, 'l2', name):,}"
                    for name in ("timeouts", "errors", "unavailable", "breaker_outages")
                ),
            ]
        )
    if not rows:
        return []
    header = "server|when|hits|misses|writes|failed writes|dropped writes|timeouts|errors"
    header += "|lookups skipped|breaker openings"
    return [
        "",
        "L2 (Redis): lookups skipped are keys not looked up because Redis failed, timed out or "
        "the circuit breaker was open; a skipped lookup is served by the model, as with L1 only.",
        "",
        *_table(header.split("|"), rows),
    ]


def _redis_trouble(snapshots: Sequence[CacheSnapshot]) -> str:
    """A warning if the L1 + L2 server ran without Redis for part of the bench."""
    last = [s for s in snapshots if s.server == "cache-l2" and _enabled_workers(s)]
    if not last:
        return ""
    workers = [w for w in _enabled_workers(last[-1]) if w["l2"]["enabled"]]
    skipped = _worker_sum(workers, "l2", "unavailable")
    if not skipped:
        return ""
    return (
        f" **Redis was skipped for {skipped:,} lookups** (timeouts: "
        f"{_worker_sum(workers, 'l2', 'timeouts'):,}, circuit breaker openings: "
        f"{_worker_sum(workers, 'l2', 'breaker_outages'):,}): for part of the runs, the "
        "L1 + L2 rows measure L1 only (see the L2 table)."
    )


def markdown(
    summaries: Sequence[Summary], meta: BenchMeta, cache_stats: Sequence[CacheSnapshot] = ()
) -> str:
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
        *_cost_summary(summaries, meta),
        *_batch_table(summaries),
        *_overload_table(summaries),
        *_cache_table(summaries, meta, cache_stats),
        *_stats_table(cache_stats, meta),
        "",
        "Errors are answers other than 2xx plus wrk's connect, read, write and timeout errors. "
        "SLO targets (course chapter): " + ", ".join(label for label, _ in SLO) + ".",
    ]
    return "\n".join(lines) + "\n"


def results_document(
    meta: BenchMeta,
    measurements: Sequence[Measurement],
    summaries: Sequence[Summary],
    cache_stats: Sequence[CacheSnapshot] = (),
) -> dict[str, Any]:
    """Everything measured, JSON-ready: the raw runs, their summaries, the caches' stats."""
    return {
        "meta": asdict(meta),
        "runs": [{**asdict(m.run), "result": m.result.to_dict()} for m in measurements],
        "summaries": [
            {
                **{k: v for k, v in asdict(s).items() if k != "statuses"},
                "statuses": {str(status): count for status, count in s.statuses.items()},
                "rows_per_s": s.rows_per_s,
                "cached_ratio": s.cached_ratio,
                "error_rate": s.error_rate,
                "usd_per_million_requests": cost_per_million(
                    s.rps, meta.cores, meta.price_per_core_hour
                ),
                "slo": slo_check(s),
            }
            for s in summaries
        ],
        "cache_stats": [asdict(snapshot) for snapshot in cache_stats],
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
    out: Path,
    meta: BenchMeta,
    measurements: Sequence[Measurement],
    cache_stats: Sequence[CacheSnapshot] = (),
) -> tuple[list[Summary], str]:
    """results.json, report.md and latency.png in `out`; the summaries and the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    summaries = summarise(measurements)
    report = markdown(summaries, meta, cache_stats)
    document = results_document(meta, measurements, summaries, cache_stats)
    (out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "report.md").write_text(report)
    plot(summaries, out / "latency.png")
    return summaries, report
