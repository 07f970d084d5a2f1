"""`python -m benchmarks`: one subcommand per suite.

Over HTTP, with wrk: `service` (the naive baseline, the service and two ceilings), `cache` (the
prediction cache), `db` (the customer endpoints on PostgreSQL), `auth` (authentication on and
off); `capacity` turns a `service --with-cache` run into a capacity plan. In process, CPU per
call: `cache-cpu`, `db-cpu`, `prediction-log-ab` and `metrics-ab` (the last two over HTTP too);
`shadow-ab` over HTTP only; `v2`, the Open Inference Protocol over REST and gRPC.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from benchmarks import options as opt
from benchmarks.auth_suite import AuthBenchOptions, run_auth_suite
from benchmarks.cache_workload import mix_schedule, schedule_ratio
from benchmarks.capacity import (
    CapacityError,
    ClusterShape,
    load_results,
    throughputs_from_results,
)
from benchmarks.capacity import markdown as capacity_markdown
from benchmarks.cli_inprocess import inprocess_app
from benchmarks.constants import (
    DEFAULT_DB_URL,
    DEFAULT_DURATION,
    DEFAULT_PRICE_PER_CORE_HOUR,
    DEFAULT_REDIS_URL,
    DEFAULT_WARMUP,
)
from benchmarks.db_suite import DbBenchOptions, run_db_suite
from benchmarks.http_suite import DEFAULT_SERVICE_ENV, HttpBenchOptions, run_http_bench
from benchmarks.memory_suite import measure_memory
from benchmarks.memory_suite import report as memory_report
from benchmarks.plan import ALL_SERVERS
from benchmarks.production import DEFAULT_DATABASE_URL
from benchmarks.terminal import console, log
from benchmarks.tree_ab import TreeABOptions, run_tree_ab, run_tree_ab_in_process
from benchmarks.v2_suite import V2BenchOptions, run_v2_suite
from churn_mlops.db.engine import DatabaseURLError, is_sqlite

app = typer.Typer(
    name="benchmarks",
    help="Benchmark the churn-mlops service: against a naive baseline and two ceilings, with "
    "its cache, database, authentication, prediction log and metrics on and off.",
    no_args_is_help=True,
    add_completion=False,
)
ALL = ",".join(ALL_SERVERS)
HTTP = "Over HTTP, with wrk"


def _http_options(
    suites: tuple[str, ...],
    *,
    model_dir: Path | None,
    duration: str,
    warmup: str,
    rounds: int,
    out: Path | None,
    only: str,
    service_env: Sequence[str] | None,
    price_per_core_hour: float,
    redis_url: str,
    cache_connections: str,
    hit_ratio: float,
    connections: str = "1,32,128",
    overload_connections: int = 512,
    production_database_url: str = DEFAULT_DATABASE_URL,
) -> HttpBenchOptions:
    """The options of `service` and `cache`, checked and parsed in one place."""
    duration_s, warmup_s = opt.durations(duration, warmup)
    return HttpBenchOptions(
        suites=suites,
        model_dir=model_dir,
        selected=opt.servers(only),
        duration_s=duration_s,
        warmup_s=warmup_s,
        rounds=rounds,
        out=out,
        service_env=opt.service_env(service_env or [], DEFAULT_SERVICE_ENV),
        price_per_core_hour=price_per_core_hour,
        redis_url=redis_url,
        levels=opt.connection_levels(connections, "--connections"),
        overload_connections=overload_connections,
        cache_levels=opt.connection_levels(cache_connections, "--cache-connections"),
        # What the mixed runs really send: the ratio rounded to the schedule's granularity.
        hit_ratio=schedule_ratio(mix_schedule(hit_ratio)),
        production_database_url=production_database_url,
    )


@app.command("service", rich_help_panel=HTTP)
def service(
    model_dir: opt.ModelDirOption = None,
    connections: Annotated[
        str, typer.Option(help="Comma-separated connection counts for POST /predict.")
    ] = "1,32,128",
    duration: opt.DurationOption = DEFAULT_DURATION,
    warmup: opt.WarmupOption = DEFAULT_WARMUP,
    rounds: opt.RoundsOption = 1,
    out: opt.OutOption = None,
    only: opt.OnlyOption = ALL,
    overload_connections: Annotated[
        int,
        typer.Option(min=0, help="Connections of the overload run against the service; 0: none."),
    ] = 512,
    service_env: opt.ServiceEnvOption = None,
    price_per_core_hour: opt.PriceOption = DEFAULT_PRICE_PER_CORE_HOUR,
    with_cache: Annotated[
        bool, typer.Option(help="Add the cache suite's runs to the same rounds and report.")
    ] = False,
    cache_connections: opt.CacheConnectionsOption = "32",
    hit_ratio: opt.HitRatioOption = 0.5,
    redis_url: opt.RedisUrlOption = DEFAULT_REDIS_URL,
    production_database_url: Annotated[
        str,
        typer.Option(
            help="PostgreSQL of the production server (its API key and prediction log); "
            "created if missing and migrated."
        ),
    ] = DEFAULT_DATABASE_URL,
) -> None:
    """Compare the production configuration, the naive baseline, the service with its cache
    off and two ceilings under the same wrk load.

    Every server runs with 2 uvicorn workers on a free 127.0.0.1 port; at each connection level
    the servers take turns going first. Then /predict/batch with 1,000 and 10,000 rows, and an
    overload run against the service. Results go to results.json, report.md and latency.png.
    """
    options = _http_options(
        ("default", "cache") if with_cache else ("default",),
        model_dir=model_dir,
        duration=duration,
        warmup=warmup,
        rounds=rounds,
        out=out,
        only=only,
        service_env=service_env,
        price_per_core_hour=price_per_core_hour,
        redis_url=redis_url,
        cache_connections=cache_connections,
        hit_ratio=hit_ratio,
        connections=connections,
        overload_connections=overload_connections,
        production_database_url=production_database_url,
    )
    run_http_bench(options)


@app.command("cache", rich_help_panel=HTTP)
def cache(
    model_dir: opt.ModelDirOption = None,
    cache_connections: opt.CacheConnectionsOption = "32",
    hit_ratio: opt.HitRatioOption = 0.5,
    redis_url: opt.RedisUrlOption = DEFAULT_REDIS_URL,
    duration: opt.DurationOption = DEFAULT_DURATION,
    warmup: opt.WarmupOption = DEFAULT_WARMUP,
    rounds: opt.RoundsOption = 1,
    out: opt.OutOption = None,
    only: opt.OnlyOption = ALL,
    service_env: opt.ServiceEnvOption = None,
    price_per_core_hour: opt.PriceOption = DEFAULT_PRICE_PER_CORE_HOUR,
) -> None:
    """The service with its prediction cache off, with L1 only and with L1 + L2 (Redis).

    Each on the hit path (warm customers only) and on a mixed workload at --hit-ratio; the
    bench's Redis keys live under a prefix of their own, deleted after the run.
    """
    options = _http_options(
        ("cache",),
        model_dir=model_dir,
        duration=duration,
        warmup=warmup,
        rounds=rounds,
        out=out,
        only=only,
        service_env=service_env,
        price_per_core_hour=price_per_core_hour,
        redis_url=redis_url,
        cache_connections=cache_connections,
        hit_ratio=hit_ratio,
    )
    run_http_bench(options)


@app.command("db", rich_help_panel=HTTP)
def db(
    url: Annotated[
        str, typer.Option(help="PostgreSQL database to seed (created if missing).")
    ] = DEFAULT_DB_URL,
    customers: Annotated[
        int, typer.Option(min=1, help="Synthetic customers it holds.")
    ] = 1_000_000,
    predictions: Annotated[int, typer.Option(min=0, help="Predictions it holds.")] = 5_000_000,
    connections: Annotated[int, typer.Option(min=1, help="wrk connections.")] = 32,
    model_dir: opt.ModelDirOption = None,
    duration: opt.DurationOption = DEFAULT_DURATION,
    warmup: opt.WarmupOption = DEFAULT_WARMUP,
    rounds: opt.RoundsOption = 1,
    out: opt.OutOption = None,
) -> None:
    """The customer endpoints on PostgreSQL at size, and our listing against the seed's N+1."""
    duration_s, warmup_s = opt.durations(duration, warmup)
    try:
        if is_sqlite(url):
            raise typer.BadParameter("the db suite measures PostgreSQL", param_hint="--url")
    except DatabaseURLError as error:
        raise typer.BadParameter(str(error), param_hint="--url") from None
    served, _ = opt.served_model(model_dir)
    options = DbBenchOptions(
        model_dir=served,
        out_dir=opt.results_dir(out, "db"),
        url=url,
        customers=customers,
        predictions=predictions,
        duration_s=duration_s,
        warmup_s=warmup_s,
        rounds=rounds,
        connections=connections,
    )
    with opt.stops_cleanly():
        report = run_db_suite(options, log)
    sys.stdout.write(report)
    console.print(f"Results written to {options.out_dir}/ (results.json, report.md)")


@app.command("auth", rich_help_panel=HTTP)
def auth(
    connections: Annotated[str, typer.Option(help="Comma-separated wrk connection counts.")] = "32",
    model_dir: opt.ModelDirOption = None,
    duration: opt.DurationOption = DEFAULT_DURATION,
    warmup: opt.WarmupOption = DEFAULT_WARMUP,
    rounds: opt.RoundsOption = 1,
    out: opt.OutOption = None,
) -> None:
    """POST /predict with authentication on and off, interleaved.

    Then the guard of the raw /predict path and the whole app, timed in process.
    """
    levels = opt.connection_levels(connections, "--connections")
    duration_s, warmup_s = opt.durations(duration, warmup)
    served, artifact = opt.served_model(model_dir)
    options = AuthBenchOptions(
        model_dir=served,
        model_version=artifact.version,
        out_dir=opt.results_dir(out, "auth"),
        connections=levels,
        duration_s=duration_s,
        warmup_s=warmup_s,
        rounds=rounds,
    )
    with opt.stops_cleanly():
        report = run_auth_suite(options)
    sys.stdout.write(report)


@app.command("tree-ab", rich_help_panel=HTTP)
def tree_ab(
    baseline_src: Annotated[
        Path, typer.Option(help="Another checkout's src/ (a git worktree of the commit before).")
    ],
    connections: Annotated[str, typer.Option(help="Comma-separated wrk connection counts.")] = "32",
    model_dir: opt.ModelDirOption = None,
    duration: opt.DurationOption = DEFAULT_DURATION,
    warmup: opt.WarmupOption = DEFAULT_WARMUP,
    rounds: opt.RoundsOption = 5,
    out: opt.OutOption = None,
    in_process: Annotated[
        bool, typer.Option(help="CPU per request in process instead of wrk over HTTP.")
    ] = False,
    block_requests: Annotated[int, typer.Option(min=1, help="In process: calls per block.")] = 5000,
    blocks: Annotated[int, typer.Option(min=1, help="In process: blocks per child.")] = 3,
) -> None:
    """POST /predict served from this tree and from a baseline tree, interleaved."""
    levels = opt.connection_levels(connections, "--connections")
    duration_s, warmup_s = opt.durations(duration, warmup)
    served, _ = opt.served_model(model_dir)
    options = TreeABOptions(baseline_src, served, rounds, duration_s, warmup_s, tuple(levels), out)
    with opt.stops_cleanly():
        if in_process:
            lines = run_tree_ab_in_process(options, block_requests, blocks)
        else:
            lines = run_tree_ab(options)
    typer.echo("\n".join(lines))


@app.command("capacity", rich_help_panel="From a run's results")
def capacity(
    results: Annotated[
        Path, typer.Argument(help="results.json of a `service` run, or its folder.")
    ],
    targets: Annotated[
        str, typer.Option(help="Comma-separated target loads, requests per second.")
    ] = "1000,10000",
    p99_target_ms: Annotated[
        float, typer.Option(min=0, help="Latency target a measured run must meet.")
    ] = 25.0,
    price_per_core_hour: Annotated[
        float, typer.Option(min=0, help="USD per core-hour.")
    ] = ClusterShape.price_per_core_hour,
    db_pool_size: Annotated[
        int, typer.Option(min=1, help="CHURN_DB_POOL_SIZE of each pod.")
    ] = ClusterShape.db_pool_size,
    db_max_overflow: Annotated[
        int, typer.Option(min=0, help="CHURN_DB_MAX_OVERFLOW of each pod.")
    ] = ClusterShape.db_max_overflow,
    db_read_pool_size: Annotated[
        int, typer.Option(min=0, help="CHURN_DB_READ_POOL_SIZE of each pod.")
    ] = ClusterShape.db_read_pool_size,
    pg_max_connections: Annotated[
        int, typer.Option(min=1, help="PostgreSQL's max_connections.")
    ] = ClusterShape.pg_max_connections,
) -> None:
    """Pods, cores, connections and cost per million requests for target loads, from a run.

    The HPA's targets and the pods' requests are those of deploy/k8s/base; the plan shows them
    next to an RPS target taken from the measured capacity (docs/capacity.md).
    """
    shape = ClusterShape(
        price_per_core_hour=price_per_core_hour,
        db_pool_size=db_pool_size,
        db_max_overflow=db_max_overflow,
        db_read_pool_size=db_read_pool_size,
        pg_max_connections=pg_max_connections,
    )
    try:
        loads = [float(value) for value in opt.csv(targets)]
    except ValueError:
        raise typer.BadParameter("numbers, comma-separated", param_hint="--targets") from None
    if not loads or any(load <= 0 for load in loads):
        raise typer.BadParameter("positive numbers, comma-separated", param_hint="--targets")
    try:
        document = load_results(results)
        throughputs = throughputs_from_results(document, p99_target_ms)
    except CapacityError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None
    source = str(document["meta"].get("command", results))
    sys.stdout.write(
        capacity_markdown(throughputs, loads, shape, p99_target_ms=p99_target_ms, source=source)
    )


@app.command("memory", rich_help_panel=HTTP)
def memory(
    model_dir: opt.ModelDirOption = None,
    starts: Annotated[int, typer.Option(min=1, help="Starts of the service, in turn.")] = 3,
    connections: Annotated[int, typer.Option(min=1, help="wrk connections of the load.")] = 32,
    duration: opt.DurationOption = DEFAULT_DURATION,
) -> None:
    """One worker's memory (RSS once ready and after load) and its start to ready: the
    Kubernetes memory request and startup probe are set from these (docs/capacity.md)."""
    duration_s, _ = opt.durations(duration, "0")
    served, _ = opt.served_model(model_dir)
    with opt.stops_cleanly():
        runs = measure_memory(served, starts=starts, connections=connections, duration_s=duration_s)
    sys.stdout.write(
        "\n".join(memory_report(runs, connections=connections, duration_s=duration_s)) + "\n"
    )


@app.command("v2", rich_help_panel=HTTP)
def v2(
    connections: Annotated[
        int, typer.Option(min=1, help="Connections (wrk) and concurrent gRPC calls, one row each.")
    ] = 32,
    grpc_processes: Annotated[
        int, typer.Option(min=1, help="Processes the gRPC calls are spread over.")
    ] = 2,
    batch_rows: Annotated[int, typer.Option(min=1, help="Rows per batch request.")] = 10_000,
    batch_concurrency: Annotated[
        int, typer.Option(min=1, help="Concurrent batch requests (httpx).")
    ] = 4,
    model_dir: opt.ModelDirOption = None,
    duration: opt.DurationOption = DEFAULT_DURATION,
    warmup: opt.WarmupOption = DEFAULT_WARMUP,
    rounds: opt.RoundsOption = 3,
    out: opt.OutOption = None,
) -> None:
    """The Open Inference Protocol against the service's own JSON on one server: V2 JSON infer
    and gRPC ModelInfer against POST /predict (one row), V2 binary infer against
    /predict/batch (10,000 rows); medians of rounds, workloads interleaved."""
    if grpc_processes > connections:
        raise typer.BadParameter(
            "at most one process per concurrent call", param_hint="--grpc-processes"
        )
    duration_s, warmup_s = opt.durations(duration, warmup)
    served, artifact = opt.served_model(model_dir)
    options = V2BenchOptions(
        model_dir=served,
        model_version=artifact.version,
        out_dir=opt.results_dir(out, "v2"),
        connections=connections,
        grpc_processes=grpc_processes,
        batch_rows=batch_rows,
        batch_concurrency=batch_concurrency,
        duration_s=duration_s,
        warmup_s=warmup_s,
        rounds=rounds,
    )
    with opt.stops_cleanly():
        report = run_v2_suite(options)
    sys.stdout.write(report)


app.add_typer(inprocess_app)
