"""The subcommands that time the service in process (`benchmarks.inprocess`), where CPU per call
resolves what wrk's noise on a shared machine hides; two of them also run their A/B over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from benchmarks import options as opt
from benchmarks.cache_cpu import measure, report
from benchmarks.constants import DEFAULT_DB_URL, DEFAULT_DURATION, DEFAULT_WARMUP, WORKERS
from benchmarks.db_cpu import run_db_cpu
from benchmarks.metrics_ab import MetricsABOptions, run_metrics_ab
from benchmarks.prediction_log_ab import PredictionLogABOptions, run_prediction_log_ab
from benchmarks.reasons_ab import ReasonsABOptions, run_reasons_ab
from benchmarks.shadow_ab import ShadowABOptions, run_shadow_ab

PANEL = "In process"
inprocess_app = typer.Typer()

ConnectionsOption = Annotated[int, typer.Option(min=1, help="wrk connections (over HTTP).")]
InProcessOption = Annotated[
    bool, typer.Option(help="Raw ASGI calls in this process, CPU per request, instead of HTTP.")
]
HttpRoundsOption = Annotated[
    int, typer.Option(min=1, help="Measurements per server over HTTP, taking turns.")
]


@inprocess_app.command("cache-cpu", rich_help_panel=PANEL)
def cache_cpu(
    model_dir: opt.ModelDirOption = None,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds; the report gives medians.")] = 7,
    calls: Annotated[int, typer.Option(min=2, help="Calls per run.")] = 20_000,
    concurrency: Annotated[int, typer.Option(min=1, help="Concurrent callers.")] = 32,
    redis_url: Annotated[
        str | None, typer.Option(help="Add an L1 + L2 pipeline on this Redis.")
    ] = None,
) -> None:
    """The prediction cache: CPU per `predict_one` call, cache off, L1 only and L1 + L2.

    On the hit path, on misses only and on a 50/50 mix; pipelines take turns in every round.
    """
    served, _ = opt.served_model(model_dir)
    results = asyncio.run(
        measure(served, rounds=rounds, calls=calls, callers=concurrency, redis_url=redis_url)
    )
    typer.echo("\n".join(report(results)))


@inprocess_app.command("db-cpu", rich_help_panel=PANEL)
def db_cpu(
    url: Annotated[str, typer.Option(help="The database the db suite seeded.")] = DEFAULT_DB_URL,
    model_dir: opt.ModelDirOption = None,
    requests: Annotated[int, typer.Option(min=1, help="Requests per endpoint and block.")] = 300,
    customers: Annotated[
        int, typer.Option(min=1, help="Synthetic customers the database holds.")
    ] = 1_000_000,
    blocks: opt.BlocksOption = 1,
) -> None:
    """The customer endpoints: CPU per request of the detail, our listing and the seed's N+1."""
    served, _ = opt.served_model(model_dir)
    typer.echo("\n".join(run_db_cpu(url, served, requests, customers, blocks)))


@inprocess_app.command("prediction-log-ab", rich_help_panel=PANEL)
def prediction_log_ab(
    database_url: Annotated[str, typer.Option(help="PostgreSQL (or SQLite) URL.")],
    model_dir: opt.ModelDirOption = None,
    in_process: InProcessOption = False,
    blocks: opt.BlocksOption = 20,
    block_requests: opt.BlockRequestsOption = 2_000,
    rounds: HttpRoundsOption = 5,
    duration: opt.DurationOption = DEFAULT_DURATION,
    warmup: opt.WarmupOption = DEFAULT_WARMUP,
    connections: ConnectionsOption = 32,
    workers: Annotated[int, typer.Option(min=1, help="Workers per server.")] = WORKERS,
    cache: Annotated[bool, typer.Option(help="Prediction cache on (the hit path).")] = False,
    out: Annotated[Path | None, typer.Option(help="Folder for the servers' logs.")] = None,
    features: Annotated[
        bool,
        typer.Option(help="Compare the log without and with CHURN_LOG_FEATURES (both log on)."),
    ] = False,
) -> None:
    """The prediction log: `record()` alone, then the service with the log off and on (or,
    with --features, without and with the scored rows' features)."""
    duration_s, warmup_s = opt.durations(duration, warmup)
    served, _ = opt.served_model(model_dir)
    options = PredictionLogABOptions(
        database_url,
        served,
        rounds,
        duration_s,
        warmup_s,
        connections,
        workers,
        cache,
        out,
        features=features,
    )
    with opt.stops_cleanly():
        lines = run_prediction_log_ab(
            options, in_process=in_process, blocks=blocks, block_requests=block_requests
        )
    typer.echo("\n".join(lines))


@inprocess_app.command("shadow-ab", rich_help_panel=PANEL)
def shadow_ab(
    database_url: Annotated[str, typer.Option(help="PostgreSQL (or SQLite) URL.")],
    model_dir: opt.ModelDirOption = None,
    rounds: HttpRoundsOption = 5,
    duration: opt.DurationOption = DEFAULT_DURATION,
    warmup: opt.WarmupOption = DEFAULT_WARMUP,
    connections: ConnectionsOption = 32,
    workers: Annotated[int, typer.Option(min=1, help="Workers per server.")] = WORKERS,
    cache: Annotated[bool, typer.Option(help="Prediction cache on (the hit path).")] = False,
    out: Annotated[Path | None, typer.Option(help="Folder for the servers' logs.")] = None,
) -> None:
    """A challenger in shadow: the service with it off and on, over HTTP (server CPU per
    request and RPS)."""
    duration_s, warmup_s = opt.durations(duration, warmup)
    served, _ = opt.served_model(model_dir)
    options = ShadowABOptions(
        database_url, served, rounds, duration_s, warmup_s, connections, workers, cache, out
    )
    with opt.stops_cleanly():
        lines = run_shadow_ab(options)
    typer.echo("\n".join(lines))


@inprocess_app.command("metrics-ab", rich_help_panel=PANEL)
def metrics_ab(
    model_dir: opt.ModelDirOption = None,
    in_process: InProcessOption = False,
    blocks: opt.BlocksOption = 20,
    block_requests: opt.BlockRequestsOption = 2_000,
    rounds: HttpRoundsOption = 5,
    duration: opt.DurationOption = DEFAULT_DURATION,
    warmup: opt.WarmupOption = DEFAULT_WARMUP,
    connections: ConnectionsOption = 32,
    same: Annotated[
        bool, typer.Option(help="A/A: both servers with metrics off (the noise floor).")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Folder for the servers' logs.")] = None,
) -> None:
    """Metrics: the service with `CHURN_METRICS_ENABLED` on and off."""
    duration_s, warmup_s = opt.durations(duration, warmup)
    served, artifact = opt.served_model(model_dir)
    options = MetricsABOptions(served, rounds, duration_s, warmup_s, connections, same, out)
    with opt.stops_cleanly():
        lines = run_metrics_ab(
            options, artifact, in_process=in_process, blocks=blocks, block_requests=block_requests
        )
    typer.echo("\n".join(lines))


@inprocess_app.command("reasons-ab", rich_help_panel=PANEL)
def reasons_ab(
    model_dir: opt.ModelDirOption = None,
    rounds: HttpRoundsOption = 5,
    duration: opt.DurationOption = DEFAULT_DURATION,
    warmup: opt.WarmupOption = DEFAULT_WARMUP,
    connections: ConnectionsOption = 32,
    batch_rows: Annotated[int, typer.Option(min=1, help="Rows per explained batch.")] = 10_000,
    http: Annotated[bool, typer.Option(help="Also the A/B over HTTP.")] = True,
    out: Annotated[Path | None, typer.Option(help="Folder for the server's logs.")] = None,
) -> None:
    """Reason codes: rows/s of explained batches in process, and a single `/predict` with and
    without `"explain": true` over HTTP (RPS and server CPU, interleaved rounds, medians)."""
    duration_s, warmup_s = opt.durations(duration, warmup)
    served, artifact = opt.served_model(model_dir)
    options = ReasonsABOptions(served, rounds, duration_s, warmup_s, connections, batch_rows, out)
    with opt.stops_cleanly():
        lines = run_reasons_ab(options, artifact, http=http)
    typer.echo("\n".join(lines))
