"""The service and cache suites over HTTP: start every server, load each in turn with wrk, report
side by side.

Every server runs with 2 uvicorn workers on a free 127.0.0.1 port; at each connection level the
servers take turns going first (`plan.plan_runs`). Results go to results.json, report.md and
latency.png in the results folder; what was measured is written even after Ctrl-C or a failure.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import typer

from benchmarks.cache_servers import bench_key_prefix, cache_servers, redis_problem, redis_readiness
from benchmarks.cache_suite import (
    CACHE_SERVER_NAMES,
    CacheWorkload,
    remove_bench_keys,
)
from benchmarks.constants import (
    BATCH_BODIES,
    COMMAND,
    DISTINCT_CUSTOMERS,
    WORK_DIR_PREFIX,
    WORKERS,
)
from benchmarks.load import (
    LoadError,
    Wrk,
    batch_bodies,
    prediction_bodies,
    write_bodies,
)
from benchmarks.options import results_dir, served_model, stops_cleanly
from benchmarks.plan import ALL_SERVERS, CACHE_SCENARIOS, Run, plan_runs
from benchmarks.production import (
    DEFAULT_DATABASE_URL,
    ProductionDatabaseError,
    prepare_database,
    production_credentials,
    production_service,
)
from benchmarks.report import write_results
from benchmarks.runner import Runner
from benchmarks.servers import (
    BenchCredentials,
    RunningServer,
    ServerError,
    ServerSpec,
    bench_servers,
    provision_credentials,
    start_server,
)
from benchmarks.summary import LABELS, BenchMeta, Measurement
from benchmarks.terminal import console
from churn_mlops.data import load_telco_csv

DEFAULT_SERVICE_ENV = {"CHURN_CACHE_ENABLED": "false"}
"""The comparison measures the model path: a prediction cache would answer repeated customers."""


@dataclass(frozen=True)
class HttpBenchOptions:
    """The service and cache suites' options, parsed and checked (`benchmarks.options`)."""

    suites: tuple[str, ...]
    """"default" (baseline, service, ceilings), "cache", or both in one run."""
    model_dir: Path | None
    selected: list[str]
    duration_s: int
    warmup_s: int
    rounds: int
    out: Path | None
    service_env: dict[str, str]
    price_per_core_hour: float
    redis_url: str
    levels: Sequence[int] = (1, 32, 128)
    overload_connections: int = 512
    cache_levels: Sequence[int] = (32,)
    hit_ratio: float = 0.5
    """What the mixed runs really send: the target rounded to the schedule's granularity."""
    production_database_url: str = DEFAULT_DATABASE_URL
    """The production server's PostgreSQL database: created if missing, migrated."""

    @property
    def name(self) -> str:
        """The subcommand that runs these suites."""
        return "cache" if self.suites == ("cache",) else "service"

    def command(self, servers: Sequence[str]) -> str:
        """The command line that repeats this run, with only the options its suites use."""
        command = (
            f"{COMMAND} {self.name} --duration {self.duration_s}s --warmup {self.warmup_s}s "
            f"--rounds {self.rounds} --only {','.join(servers)}"
        )
        for key, value in sorted(self.service_env.items()):
            if DEFAULT_SERVICE_ENV.get(key) != value:
                command += f" --service-env {shlex.quote(f'{key}={value}')}"
        if "production" in servers and self.production_database_url != DEFAULT_DATABASE_URL:
            command += f" --production-database-url {shlex.quote(self.production_database_url)}"
        if "default" in self.suites:
            command += (
                f" --connections {','.join(map(str, self.levels))}"
                f" --overload-connections {self.overload_connections}"
            )
        if "cache" in self.suites:
            command += " --with-cache" if "default" in self.suites else ""
            command += (
                f" --cache-connections {','.join(map(str, self.cache_levels))}"
                f" --hit-ratio {self.hit_ratio:g}"
            )
        return command


@dataclass(frozen=True)
class Prepared:
    """What a run needs before its first server starts."""

    runs: list[Run]
    needed: list[str]
    key_prefix: str | None
    out_dir: Path
    started: datetime
    served: Path | None
    model_version: str | None


def run_http_bench(options: HttpBenchOptions) -> None:
    """Plan, start the servers, measure, write the results; exits 2 on a plan with nothing to
    run or a Redis that does not answer, 1 when a server or wrk fails."""
    prepared = _prepare(options)
    with tempfile.TemporaryDirectory(prefix=WORK_DIR_PREFIX) as work_name:
        work = Path(work_name)
        try:
            wrk = Wrk(work)
        except LoadError as error:
            console.print(f"[red]{error}[/]")
            raise typer.Exit(2) from None
        credentials = _credentials(work) if prepared.served is not None else None
        production = (
            _credentials(work, options.production_database_url)
            if "production" in prepared.needed
            else None
        )
        cache = (
            CacheWorkload.write(work)
            if any(run.scenario in CACHE_SCENARIOS for run in prepared.runs)
            else None
        )
        meta = _meta(options, prepared, wrk, cache)
        specs = _specs(options, prepared, credentials, production)
        _measure_all(options, prepared, wrk, specs, work, meta, cache)


def _prepare(options: HttpBenchOptions) -> Prepared:
    env = options.service_env
    if "cache" in options.suites and env.get("CHURN_CACHE_ENABLED", "").lower() != "false":
        raise typer.BadParameter("the cache suite needs the cache off", param_hint="--service-env")
    runs = plan_runs(
        options.selected,
        options.levels,
        rounds=options.rounds,
        overload_connections=options.overload_connections,
        suites=options.suites,
        cache_connections=options.cache_levels,
        hit_ratio=options.hit_ratio,
    )
    needed = [name for name in ALL_SERVERS if any(run.server == name for run in runs)]
    if not needed:
        console.print("[red]nothing to run: --only selects no server of the suite[/]")
        raise typer.Exit(2)
    key_prefix = bench_key_prefix() if "cache-l2" in needed else None
    if key_prefix and (problem := redis_problem(options.redis_url)):
        console.print(
            f"[red]{problem}[/]: start it (`make services`), give --redis-url, "
            "or leave cache-l2 out with --only"
        )
        raise typer.Exit(2)
    if "production" in needed:
        try:
            with console.status("preparing the production server's PostgreSQL database"):
                prepare_database(options.production_database_url)
        except ProductionDatabaseError as error:
            console.print(
                f"[red]{error}[/]: start it (`make services`), give --production-database-url, "
                "or leave production out with --only"
            )
            raise typer.Exit(2) from None
    started = datetime.now(UTC)
    served, version = None, None
    if {"production", "naive", "service", *CACHE_SERVER_NAMES} & set(needed):
        served, artifact = served_model(options.model_dir)
        version = artifact.version
    out_dir = results_dir(options.out, options.name, started)
    return Prepared(runs, needed, key_prefix, out_dir, started, served, version)


def _credentials(work: Path, production_database_url: str | None = None) -> BenchCredentials:
    """The API key our service's servers get, in a database of the bench's own: SQLite, or
    the production server's PostgreSQL database."""
    try:
        with console.status("creating the bench's API key (churn-mlops keys create)"):
            if production_database_url:
                return production_credentials(work, production_database_url)
            return provision_credentials(work)
    except ServerError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None


def _specs(
    options: HttpBenchOptions,
    prepared: Prepared,
    credentials: BenchCredentials | None,
    production: BenchCredentials | None,
) -> dict[str, ServerSpec]:
    env = options.service_env
    specs = bench_servers(prepared.served, service_env=env, credentials=credentials)
    if prepared.served is not None and production is not None:
        specs["production"] = production_service(prepared.served, production)
    if prepared.served is not None:
        specs |= cache_servers(
            prepared.served,
            service_env=env,
            redis_url=options.redis_url if prepared.key_prefix else None,
            key_prefix=prepared.key_prefix,
            credentials=credentials,
        )
    return specs


def _meta(
    options: HttpBenchOptions, prepared: Prepared, wrk: Wrk, cache: CacheWorkload | None
) -> BenchMeta:
    return BenchMeta(
        started=prepared.started.strftime("%Y-%m-%d %H:%M UTC"),
        command=options.command(prepared.needed),
        duration_s=options.duration_s,
        warmup_s=options.warmup_s,
        rounds=options.rounds,
        workers=WORKERS,
        cores=WORKERS,
        price_per_core_hour=options.price_per_core_hour,
        wrk_version=wrk.version(),
        model_version=prepared.model_version,
        service_env=options.service_env if "service" in prepared.needed else {},
        warm_customers=cache.warm_customers if cache else None,
        redis_url=options.redis_url if prepared.key_prefix else None,
        redis_key_prefix=prepared.key_prefix,
    )


def _measure_all(
    options: HttpBenchOptions,
    prepared: Prepared,
    wrk: Wrk,
    specs: Mapping[str, ServerSpec],
    work: Path,
    meta: BenchMeta,
    cache: CacheWorkload | None,
) -> None:
    """Start the servers, run the plan, stop them; the results are written whatever happens."""
    runs, out_dir = prepared.runs, prepared.out_dir
    bodies = _write_bodies(work, runs)
    warming = len(CACHE_SERVER_NAMES) * max(options.warmup_s, 1) if cache else 0
    minutes = (len(runs) * (options.duration_s + options.warmup_s) + warming) / 60
    console.print(
        f"{len(runs)} runs of {options.warmup_s}+{options.duration_s} s (about {minutes:.1f} "
        f"min of load) on {os.cpu_count()} cores; results in {out_dir}"
    )
    measurements: list[Measurement] = []
    try:
        with stops_cleanly(), _sigterm_unwinds():
            try:
                with ExitStack() as stack:
                    running = {
                        name: _start(stack, specs[name], out_dir / "logs")
                        for name in prepared.needed
                    }
                    runner = Runner(
                        wrk, running, options.warmup_s, options.duration_s, bodies, cache
                    )
                    runner.run_all(runs, measurements)
            finally:
                # Once the servers have stopped, so that no late write follows the deletion;
                # also after Ctrl-C or a failure.
                if prepared.key_prefix:
                    removed = remove_bench_keys(options.redis_url, prepared.key_prefix)
                    meta = replace(meta, redis_keys_removed=removed)
    finally:
        # Also after Ctrl-C or a failure: what was measured is kept.
        if measurements:
            _, report = write_results(out_dir, meta, measurements, cache.snapshots if cache else ())
            sys.stdout.write(report)
            console.print(f"Results written to {out_dir}/ (results.json, report.md, latency.png)")


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so that the servers are stopped as on Ctrl-C."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _write_bodies(work: Path, runs: Sequence[Run]) -> dict[int, Path]:
    """The bodies file of each rows-per-request the default suite's runs use."""
    dataset = load_telco_csv()
    files = {}
    for rows in sorted({run.rows for run in runs if run.scenario not in CACHE_SCENARIOS}):
        bodies = (
            prediction_bodies(dataset, DISTINCT_CUSTOMERS)
            if rows == 1
            else batch_bodies(dataset, rows, BATCH_BODIES)
        )
        files[rows] = write_bodies(work / f"bodies-{rows}.jsonl", bodies)
    return files


def _start(stack: ExitStack, spec: ServerSpec, log_dir: Path) -> RunningServer:
    """Start a server whose stop `stack` owns, so that leaving the stack stops it."""
    label = LABELS.get(spec.name, spec.name)
    began = time.monotonic()
    with console.status(f"starting {label}"):
        server = stack.enter_context(start_server(spec, log_dir))
    console.print(
        f"started {label} on port {server.port} in {time.monotonic() - began:.1f} s "
        f"(log: {server.log_path})"
    )
    if spec.name == "cache-l2" and (state := redis_readiness(server)) != "ok":
        raise ServerError(f"cache-l2 reports Redis {state}; see {server.log_path}")
    return server
