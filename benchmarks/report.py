"""Service and cache runs as JSON, a markdown report with the course's SLO check, and a latency
plot (`benchmarks.plot`); the cache suite's tables come from `benchmarks.report_cache`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.plot import plot
from benchmarks.report_cache import cache_table, stats_table
from benchmarks.summary import (
    LABELS,
    SLO,
    BenchMeta,
    CacheSnapshot,
    Measurement,
    Summary,
    cost_per_million,
    find,
    latencies,
    ratio,
    slo_cell,
    slo_check,
    summarise,
    table,
)


def _predict_table(summaries: Sequence[Summary], meta: BenchMeta) -> list[str]:
    def versus(s: Summary, server: str, *, percent: bool = False) -> str:
        return ratio(s.rps, find(summaries, "predict", server, s.connections, 1), percent=percent)

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
                *latencies(s, "p50", "p95", "p99", "p99.9"),
                f"{s.failed:,}",
                versus(s, "naive"),
                versus(s, "fastapi", percent=True),
                versus(s, "asgi", percent=True),
                "-" if cost is None else f"{cost:.3f}",
                slo_cell(s),
            ]
        )
    header = "server|connections|RPS|p50 ms|p95 ms|p99 ms|p99.9 ms|errors|vs naive"
    header += "|of FastAPI ceiling|of ASGI ceiling|USD per 1M requests|SLO"
    return ["", "## POST /predict", "", *table(header.split("|"), rows)] if rows else []


# The course chapter's cost target ("Performance Metrics" table).
COST_TARGET_USD_PER_MILLION = 1.0
# The headline's connection level: where the ceilings are compared (issue 15's targets).
HEADLINE_CONNECTIONS = 32


def _headline(summaries: Sequence[Summary]) -> list[str]:
    """The production configuration at 32 connections against the raw-ASGI ceiling of the run."""
    production = find(summaries, "predict", "production", HEADLINE_CONNECTIONS, 1)
    if production is None or production.requests == 0:
        return []
    ceiling = find(summaries, "predict", "asgi", HEADLINE_CONNECTIONS, 1)
    versus = (
        f", {ratio(production.rps, ceiling, percent=True)} of the raw-ASGI ceiling's "
        f"{ceiling.rps:,.0f}"
        if ceiling is not None and ceiling.rps > 0
        else ""
    )
    return [
        "",
        f"**Headline**: the production configuration (API-key auth, rate limits, metrics, L1 "
        f"cache, prediction log on PostgreSQL) answered {production.rps:,.0f} requests/s at "
        f"{HEADLINE_CONNECTIONS} connections, p99 {production.latency_ms['p99']:.2f} ms"
        f"{versus}.",
    ]


def _cost_summary(summaries: Sequence[Summary], meta: BenchMeta) -> list[str]:
    """The cost per million requests of the best /predict run of the production configuration
    (else of the service), from its RPS per core."""
    predict = [s for s in summaries if s.scenario == "predict" and s.rps > 0]
    runs = [s for s in predict if s.server == "production"] or [
        s for s in predict if s.server == "service"
    ]
    if not runs:
        return []
    best = max(runs, key=lambda s: s.rps)
    who = "production configuration" if best.server == "production" else "service"
    cost = cost_per_million(best.rps, meta.cores, meta.price_per_core_hour)
    verdict = "met" if cost is not None and cost < COST_TARGET_USD_PER_MILLION else "missed"
    return [
        "",
        f"Cost: the {who}'s best `/predict` run ({best.connections} connections) answered "
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
            *latencies(s, "p50", "p99"),
            f"{s.failed:,}",
            ratio(s.rps, find(summaries, "batch", "naive", s.connections, s.rows)),
        ]
        for s in summaries
        if s.scenario == "batch"
    ]
    header = "server|rows/request|connections|requests/s|rows/s|p50 ms|p99 ms|errors|vs naive"
    return ["", "## POST /predict/batch", "", *table(header.split("|"), rows)] if rows else []


def _overload_table(summaries: Sequence[Summary]) -> list[str]:
    rows = [
        [
            LABELS.get(s.server, s.server),
            str(s.connections),
            f"{s.rps:,.0f}",
            f"{s.statuses.get(503, 0):,}",
            *latencies(s, "p50", "p99", "p99.9", "max"),
            f"{s.failed:,}",
            slo_cell(s),
        ]
        for s in summaries
        if s.scenario == "overload"
    ]
    header = "server|connections|RPS|503s|p50 ms|p99 ms|p99.9 ms|max ms|errors|SLO"
    return ["", "## Overload: POST /predict", "", *table(header.split("|"), rows)] if rows else []


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
        *_headline(summaries),
        *_predict_table(summaries, meta),
        *_cost_summary(summaries, meta),
        *_batch_table(summaries),
        *_overload_table(summaries),
        *cache_table(summaries, meta, cache_stats),
        *stats_table(cache_stats, meta),
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
