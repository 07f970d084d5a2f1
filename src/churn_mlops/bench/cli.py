"""`churn-mlops bench`: start every server, load each in turn with wrk, report side by side."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated

import redis
import typer
from rich.console import Console

from churn_mlops.bench.cache_servers import (
    DEFAULT_REDIS_URL,
    L2_TTL_SECONDS,
    bench_key_prefix,
    cache_servers,
    redis_problem,
    redis_readiness,
    remove_keys,
    worker_cache_stats,
)
from churn_mlops.bench.cache_workload import (
    fresh_supply,
    fresh_templates,
    mix_schedule,
    schedule_ratio,
    warm_bodies,
    write_fresh_templates,
)
from churn_mlops.bench.capacity import (
    CapacityError,
    ClusterShape,
    load_results,
    throughputs_from_results,
)
from churn_mlops.bench.capacity import markdown as capacity_markdown
from churn_mlops.bench.load import (
    LoadError,
    LoadResult,
    Mix,
    Wrk,
    batch_bodies,
    parse_duration,
    prediction_bodies,
    write_bodies,
)
from churn_mlops.bench.plan import ALL_SERVERS, CACHE_SCENARIOS, SUITES, Run, plan_runs
from churn_mlops.bench.report import (
    LABELS,
    BenchMeta,
    CacheSnapshot,
    Measurement,
    write_results,
)
from churn_mlops.bench.servers import (
    BenchCredentials,
    RunningServer,
    ServerError,
    ServerSpec,
    bench_servers,
    log_tail,
    provision_credentials,
    start_server,
    wait_until_idle,
)
from churn_mlops.data import SHIPPED_DATASET, load_telco_csv
from churn_mlops.model.provisioning import ensure_model
from churn_mlops.settings import Settings

WORKERS = 2
# One wrk thread per core; wrk needs far less CPU than the servers it loads.
WRK_THREADS = 2
# Distinct customers cycled through by `/predict` runs: more than any cache warm-up would see in
# a short run, so that a cache (when one is on) is measured at a realistic hit rate.
DISTINCT_CUSTOMERS = 2_000
BATCH_BODIES = 4
# The comparison measures the model path: a prediction cache would answer repeated customers.
DEFAULT_SERVICE_ENV = {"CHURN_CACHE_ENABLED": "false"}
CACHE_SERVER_NAMES = ("cache-l1", "cache-l2")

bench_app = typer.Typer(
    help="Benchmark the service against a naive baseline and two do-nothing ceilings, "
    "and its prediction cache.",
    add_completion=False,
)
console = Console(stderr=True)


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _parse_env(pairs: Sequence[str]) -> dict[str, str]:
    env = dict(DEFAULT_SERVICE_ENV)
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--service-env")
        env[name] = value
    return env


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


@dataclass
class CacheWorkload:
    """The cache suite's bodies, and the numbering of fresh bodies across all its runs.

    Every server gets fresh bodies no run sent before, anywhere in the bench: each run starts
    after the numbers the previous one used up.
    """

    warm: Path
    warm_customers: int
    templates: Path
    supply: int
    next_fresh: int = 0
    warmed: bool = False
    snapshots: list[CacheSnapshot] = field(default_factory=list)

    @classmethod
    def write(cls, work: Path) -> CacheWorkload:
        dataset = load_telco_csv()
        warm = warm_bodies(dataset)
        templates = fresh_templates(dataset)
        return cls(
            warm=write_bodies(work / "cache-warm.jsonl", warm),
            warm_customers=len(warm),
            templates=write_fresh_templates(work / "cache-fresh.tsv", templates),
            supply=fresh_supply(templates),
        )

    def mix(self, hit_ratio: float) -> Mix | None:
        schedule = mix_schedule(hit_ratio)
        if "f" not in schedule:
            return None  # the hit path: warm bodies only
        return Mix(schedule, self.templates, self.next_fresh)

    def used(self, result: LoadResult) -> None:
        before = self.next_fresh
        self.next_fresh += result.fresh_span
        if before < self.supply <= self.next_fresh:
            console.print(
                f"[yellow]  all {self.supply:,} fresh bodies sent: later mixed runs repeat "
                "them, and their observed hit ratio rises above the target[/]"
            )


def _describe(run: Run, result: LoadResult) -> str:
    latency = result.latency_ms
    line = (
        f"{result.rps:>9,.1f} req/s  p50 {latency['p50']:.2f} ms  "
        f"p99 {latency['p99']:.2f} ms  errors {result.failed:,}"
    )
    if run.rows > 1:
        line += f"  ({result.rps * run.rows:,.0f} rows/s)"
    if run.scenario == "overload":
        line += f"  503s {result.statuses.get(503, 0):,}"
    if run.scenario in CACHE_SCENARIOS:
        line += f"  cached {result.cached_ratio:.1%}"
    return line


def _settle(server: RunningServer, after: str) -> None:
    with console.status(f"waiting for {server.spec.name} to finish the requests left queued"):
        waited = wait_until_idle(server)
    if waited > 2:
        console.print(f"  {server.spec.name} stayed busy for {waited:.1f} s after the {after}")


def _check_alive(server: RunningServer) -> None:
    if server.process.poll() is not None:
        raise ServerError(
            f"{server.spec.name} died (exit {server.process.returncode}):\n"
            + log_tail(server.log_path)
        )


def _load(
    wrk: Wrk,
    server: RunningServer,
    run: Run,
    bodies: Path,
    duration_s: int,
    cache: CacheWorkload | None,
) -> LoadResult:
    mix = None
    if cache is not None and run.hit_ratio is not None:
        mix = cache.mix(run.hit_ratio)
    result = wrk.run(
        server.port,
        run.path,
        bodies,
        connections=run.connections,
        threads=WRK_THREADS,
        timeout_s=run.timeout_s,
        duration_s=duration_s,
        mix=mix,
        api_key=server.spec.api_key,
    )
    if cache is not None:
        cache.used(result)
    return result


def _measure(
    wrk: Wrk,
    server: RunningServer,
    run: Run,
    bodies: Path,
    duration_s: int,
    warmup_s: int,
    title: str,
    cache: CacheWorkload | None = None,
) -> LoadResult:
    """Warm up, let the server drain, measure, let it drain again: each run starts idle."""
    _check_alive(server)
    if warmup_s:
        with console.status(f"{title}: {warmup_s} s warm-up"):
            _load(wrk, server, run, bodies, warmup_s, cache)
        _settle(server, "warm-up")
    with console.status(f"{title}: measuring for {duration_s} s"):
        result = _load(wrk, server, run, bodies, duration_s, cache)
    _settle(server, "run")
    return result


def _snapshot(server: RunningServer, moment: str, cache: CacheWorkload) -> None:
    """Record what the server's workers say in `GET /cache/stats`, and print it."""
    _check_alive(server)
    try:
        workers = worker_cache_stats(server)
    except (OSError, ValueError) as error:
        console.print(f"[yellow]  no /cache/stats from {server.spec.name} {moment}: {error}[/]")
        return
    cache.snapshots.append(CacheSnapshot(server.spec.name, moment, workers))
    sizes = ", ".join(f"{w['l1']['size']:,}" for w in workers if w.get("enabled"))
    rates = ", ".join(f"{w['hit_rate']:.1%}" for w in workers if w.get("enabled"))
    console.print(
        f"  {server.spec.name} {moment}: {len(workers)} of {server.spec.workers} workers "
        f"reached, L1 entries {sizes}, hit rate {rates}"
    )


def _warm_caches(
    wrk: Wrk,
    servers: Mapping[str, RunningServer],
    cache: CacheWorkload,
    connections: int,
    seconds: int,
) -> None:
    """Send the warm bodies to every cache server, many times each, over many connections.

    Each worker has its own L1 and a connection stays with the worker that accepted it, so a
    body is warm in every worker only once it went over connections that reached each of them;
    at thousands of requests a second, `seconds` sends each of a few hundred bodies dozens of
    times. The stats say how far it got; a body still cold in a worker costs one miss there.
    """
    for name in CACHE_SERVER_NAMES:
        server = servers.get(name)
        if server is None:
            continue
        _check_alive(server)
        with console.status(f"warming {name}: {cache.warm_customers} customers for {seconds} s"):
            wrk.run(
                server.port,
                "/predict",
                cache.warm,
                connections=connections,
                threads=WRK_THREADS,
                duration_s=seconds,
                timeout_s=5,
                api_key=server.spec.api_key,
            )
        _settle(server, "warming")
        _snapshot(server, "after warming", cache)


def _run_all(
    wrk: Wrk,
    servers: Mapping[str, RunningServer],
    runs: Sequence[Run],
    bodies: Mapping[int, Path],
    duration_s: int,
    warmup_s: int,
    measurements: list[Measurement],
    cache: CacheWorkload | None = None,
) -> None:
    width = len(str(len(runs)))
    for number, run in enumerate(runs, start=1):
        rows = f" {run.rows:,} rows" if run.rows > 1 else ""
        title = (
            f"[{number:>{width}}/{len(runs)}] {run.server:<8} {run.scenario}{rows} "
            f"c={run.connections}"
        )
        server = servers[run.server]
        if run.scenario in CACHE_SCENARIOS:
            assert cache is not None  # noqa: S101 - planned with the cache suite
            if not cache.warmed:
                levels = [r.connections for r in runs if r.scenario in CACHE_SCENARIOS]
                _warm_caches(wrk, servers, cache, max(levels), max(warmup_s, 1))
                cache.warmed = True
            result = _measure(wrk, server, run, cache.warm, duration_s, warmup_s, title, cache)
        else:
            result = _measure(wrk, server, run, bodies[run.rows], duration_s, warmup_s, title)
        measurements.append(Measurement(run, result))
        console.print(f"{title:<41} {_describe(run, result)}", soft_wrap=True)
        if result.requests == 0:
            console.print(
                f"[yellow]  no answer within the run: {run.server} is stuck or slower than "
                f"{duration_s} s per request; see {server.log_path}[/]"
            )
    if cache is not None and cache.warmed:
        for name in CACHE_SERVER_NAMES:
            if name in servers:
                _snapshot(servers[name], "after the runs", cache)


@dataclass(frozen=True)
class RunOptions:
    """The options that shape the plan, parsed and checked."""

    levels: list[int]
    selected: list[str]
    duration_s: int
    warmup_s: int
    suites: list[str]
    cache_levels: list[int]


def _levels(text: str, option: str) -> list[int]:
    try:
        levels = [int(item) for item in _csv(text)]
        if not levels or min(levels) < 1:
            raise ValueError
    except ValueError:
        raise typer.BadParameter(
            "give positive integers like 1,32,128", param_hint=option
        ) from None
    return levels


def _parse_run_options(
    connections: str,
    only: str,
    duration: str,
    warmup: str,
    suite: str = "default",
    cache_connections: str = "32",
) -> RunOptions:
    levels = _levels(connections, "--connections")
    cache_levels = _levels(cache_connections, "--cache-connections")
    selected = _csv(only)
    if unknown := sorted(set(selected) - set(ALL_SERVERS)):
        raise typer.BadParameter(f"unknown server(s) {', '.join(unknown)}", param_hint="--only")
    if suite not in (*SUITES, "all"):
        raise typer.BadParameter(
            f"{suite!r} is not one of {', '.join((*SUITES, 'all'))}", param_hint="--suite"
        )
    try:
        duration_s, warmup_s = parse_duration(duration), parse_duration(warmup)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if duration_s < 1:
        raise typer.BadParameter("runs last at least 1s", param_hint="--duration")
    suites = list(SUITES) if suite == "all" else [suite]
    return RunOptions(levels, selected, duration_s, warmup_s, suites, cache_levels)


def _credentials(work: Path) -> BenchCredentials:
    """The API key our service's servers get (in a database of the bench's own)."""
    try:
        with console.status("creating the bench's API key (churn-mlops keys create)"):
            return provision_credentials(work)
    except ServerError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None


def _start(stack: ExitStack, spec: ServerSpec, log_dir: Path) -> RunningServer:
    """Start a server whose stop `stack` owns, so that leaving the stack stops it."""
    began = time.monotonic()
    with console.status(f"starting {LABELS.get(spec.name, spec.name)}"):
        server = stack.enter_context(start_server(spec, log_dir))
    console.print(
        f"started {LABELS.get(spec.name, spec.name)} on port {server.port} "
        f"in {time.monotonic() - began:.1f} s (log: {server.log_path})"
    )
    if spec.name == "cache-l2" and (state := redis_readiness(server)) != "ok":
        raise ServerError(f"cache-l2 reports Redis {state}; see {server.log_path}")
    return server


def _remove_bench_keys(url: str, prefix: str) -> int | None:
    """Delete the bench's keys from Redis; None (and a warning) if Redis refused."""
    try:
        removed = remove_keys(url, prefix)
    except (redis.RedisError, OSError) as error:
        console.print(
            f"[yellow]could not delete the keys under {prefix}: from {url} ({error}); "
            f"they expire within {L2_TTL_SECONDS} s[/]"
        )
        return None
    console.print(f"deleted {removed:,} keys under {prefix}: from {url}")
    return removed


def _command(
    options: RunOptions,
    servers: Sequence[str],
    rounds: int,
    overload: int,
    hit_ratio: float,
    service_env: Mapping[str, str],
) -> str:
    """The command line that repeats this bench, with only the options its suites use."""
    command = (
        f"churn-mlops bench --duration {options.duration_s}s --warmup {options.warmup_s}s "
        f"--rounds {rounds} --only {','.join(servers)}"
    )
    for name, value in sorted(service_env.items()):
        if DEFAULT_SERVICE_ENV.get(name) != value:
            command += f" --service-env {shlex.quote(f'{name}={value}')}"
    if "default" in options.suites:
        command += (
            f" --connections {','.join(map(str, options.levels))} --overload-connections {overload}"
        )
    if "cache" in options.suites:
        suite = "all" if "default" in options.suites else "cache"
        command += (
            f" --suite {suite} --cache-connections {','.join(map(str, options.cache_levels))}"
            f" --hit-ratio {hit_ratio:g}"
        )
    return command


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    model_dir: Annotated[
        Path | None, typer.Option(help="Artifact to serve; trained if missing. Default: settings.")
    ] = None,
    connections: Annotated[
        str, typer.Option(help="Comma-separated connection counts for POST /predict.")
    ] = "1,32,128",
    duration: Annotated[str, typer.Option(help="Measured time per run: 10s, 1m ...")] = "10s",
    warmup: Annotated[
        str, typer.Option(help="Unmeasured load before each run; 0 for none.")
    ] = "2s",
    rounds: Annotated[int, typer.Option(min=1, help="Repeats; the report gives medians.")] = 1,
    out: Annotated[
        Path | None, typer.Option(help="Results folder. Default: bench-results/<timestamp>/.")
    ] = None,
    only: Annotated[
        str, typer.Option(help=f"Comma-separated servers to run, of {','.join(ALL_SERVERS)}.")
    ] = ",".join(ALL_SERVERS),
    overload_connections: Annotated[
        int,
        typer.Option(min=0, help="Connections of the overload run against the service; 0: none."),
    ] = 512,
    service_env: Annotated[
        list[str] | None,
        typer.Option(
            help="KEY=VALUE for the service's environment (the cache suite's servers too, under "
            "their cache settings); repeatable; CHURN_CACHE_ENABLED=false unless given."
        ),
    ] = None,
    price_per_core_hour: Annotated[
        float, typer.Option(min=0, help="USD per core-hour, for the cost per million requests.")
    ] = 0.04,
    suite: Annotated[
        str,
        typer.Option(
            help="default: baseline, service and ceilings; cache: the service with its cache "
            "off, L1 only and L1 + L2 on the hit path and a mixed workload; all: both; "
            "db: the customer endpoints on PostgreSQL, and our listing against the seed's N+1; "
            "auth: /predict with authentication on and off, interleaved."
        ),
    ] = "default",
    cache_connections: Annotated[
        str, typer.Option(help="Comma-separated connection counts of the cache suite.")
    ] = "32",
    hit_ratio: Annotated[
        float,
        typer.Option(
            min=0, max=1, help="Target share of warm customers in the cache suite's mixed runs."
        ),
    ] = 0.5,
    redis_url: Annotated[
        str,
        typer.Option(
            help="Redis of the L1 + L2 server; its keys get a prefix of their own and are "
            "deleted after the run (no FLUSHDB)."
        ),
    ] = DEFAULT_REDIS_URL,
    db_url: Annotated[
        str, typer.Option(help="--suite db: PostgreSQL database to seed (created if missing).")
    ] = "postgresql://postgres@127.0.0.1:5432/churn_bench",
    db_customers: Annotated[
        int, typer.Option(min=1, help="--suite db: synthetic customers it holds.")
    ] = 1_000_000,
    db_predictions: Annotated[
        int, typer.Option(min=0, help="--suite db: predictions it holds.")
    ] = 5_000_000,
    db_connections: Annotated[int, typer.Option(min=1, help="--suite db: wrk connections.")] = 32,
    auth_connections: Annotated[
        str, typer.Option(help="--suite auth: comma-separated wrk connection counts.")
    ] = "32",
) -> None:
    """Compare the naive baseline, the service and two ceilings under the same wrk load.

    Every server runs with 2 uvicorn workers on a free 127.0.0.1 port; at each connection level
    the servers take turns going first. Then /predict/batch with 1,000 and 10,000 rows, and an
    overload run against the service. With --suite cache (or all): the service with its
    prediction cache off, with L1 only and with L1 + L2 (Redis), on the hit path and on a mixed
    workload at --hit-ratio. Results go to results.json, report.md and latency.png.
    """
    if ctx.invoked_subcommand is not None:
        return
    if suite == "auth":
        from churn_mlops.bench.auth_suite import run_auth_suite_from_cli

        run_auth_suite_from_cli(
            model_dir=model_dir,
            out=out,
            duration=duration,
            warmup=warmup,
            rounds=rounds,
            connections=auth_connections,
        )
        return
    if suite == "db":
        from churn_mlops.bench.db_suite import run_db_suite_from_cli

        run_db_suite_from_cli(
            model_dir=model_dir,
            out=out,
            duration=duration,
            warmup=warmup,
            rounds=rounds,
            url=db_url,
            customers=db_customers,
            predictions=db_predictions,
            connections=db_connections,
        )
        return
    options = _parse_run_options(connections, only, duration, warmup, suite, cache_connections)
    duration_s, warmup_s = options.duration_s, options.warmup_s
    env = _parse_env(service_env or [])
    if "cache" in options.suites and env.get("CHURN_CACHE_ENABLED", "").lower() != "false":
        raise typer.BadParameter(
            "the cache suite needs the cache off",
            param_hint="--service-env",
        )
    # What the mixed runs really send: the ratio rounded to the schedule's granularity.
    target = schedule_ratio(mix_schedule(hit_ratio))
    runs = plan_runs(
        options.selected,
        options.levels,
        rounds=rounds,
        overload_connections=overload_connections,
        suites=options.suites,
        cache_connections=options.cache_levels,
        hit_ratio=target,
    )
    needed = [name for name in ALL_SERVERS if any(run.server == name for run in runs)]
    if not needed:
        console.print("[red]nothing to run: --only selects no server of the suite[/]")
        raise typer.Exit(2)
    key_prefix = bench_key_prefix() if "cache-l2" in needed else None
    if key_prefix and (problem := redis_problem(redis_url)):
        console.print(
            f"[red]{problem}[/]: start it (`make services`), give --redis-url, "
            "or leave cache-l2 out with --only"
        )
        raise typer.Exit(2)
    started = datetime.now(UTC)
    out_dir = out or Path("bench-results") / started.strftime("%Y%m%dT%H%M%SZ")
    artifact, served = None, None
    if {"naive", "service", *CACHE_SERVER_NAMES} & set(needed):
        served = (model_dir or Settings().model_dir).resolve()
        artifact = ensure_model(served, Settings().data_path or SHIPPED_DATASET, "bench")

    with tempfile.TemporaryDirectory(prefix="churn-bench-") as work_name:
        work = Path(work_name)
        credentials = _credentials(work) if served is not None else None
        specs = bench_servers(served, workers=WORKERS, service_env=env, credentials=credentials)
        if served is not None:
            specs |= cache_servers(
                served,
                workers=WORKERS,
                service_env=env,
                redis_url=redis_url if key_prefix else None,
                key_prefix=key_prefix,
                credentials=credentials,
            )
        try:
            wrk = Wrk(work)
        except LoadError as error:
            console.print(f"[red]{error}[/]")
            raise typer.Exit(2) from None
        bodies = _write_bodies(work, runs)
        cache = (
            CacheWorkload.write(work)
            if any(run.scenario in CACHE_SCENARIOS for run in runs)
            else None
        )
        meta = BenchMeta(
            started=started.strftime("%Y-%m-%d %H:%M UTC"),
            command=_command(options, needed, rounds, overload_connections, target, env),
            duration_s=duration_s,
            warmup_s=warmup_s,
            rounds=rounds,
            workers=WORKERS,
            cores=WORKERS,
            price_per_core_hour=price_per_core_hour,
            wrk_version=wrk.version(),
            model_version=artifact.version if artifact else None,
            service_env=env if "service" in needed else {},
            warm_customers=cache.warm_customers if cache else None,
            redis_url=redis_url if key_prefix else None,
            redis_key_prefix=key_prefix,
        )
        warming = len(CACHE_SERVER_NAMES) * max(warmup_s, 1) if cache else 0
        minutes = (len(runs) * (duration_s + warmup_s) + warming) / 60
        console.print(
            f"{len(runs)} runs of {warmup_s}+{duration_s} s (about {minutes:.1f} min of load) "
            f"on {os.cpu_count()} cores; results in {out_dir}"
        )
        measurements: list[Measurement] = []
        try:
            with _sigterm_unwinds():
                try:
                    with ExitStack() as stack:
                        running = {
                            name: _start(stack, specs[name], out_dir / "logs") for name in needed
                        }
                        _run_all(
                            wrk, running, runs, bodies, duration_s, warmup_s, measurements, cache
                        )
                finally:
                    # Once the servers have stopped, so that no late write follows the deletion;
                    # also after Ctrl-C or a failure.
                    if key_prefix:
                        meta = replace(
                            meta, redis_keys_removed=_remove_bench_keys(redis_url, key_prefix)
                        )
        except (ServerError, LoadError) as error:
            console.print(f"[red]bench stopped:[/] {error}")
            raise typer.Exit(1) from None
        finally:
            # Also after Ctrl-C or a failure: what was measured is kept.
            if measurements:
                _, report = write_results(
                    out_dir, meta, measurements, cache.snapshots if cache else ()
                )
                sys.stdout.write(report)
                console.print(
                    f"Results written to {out_dir}/ (results.json, report.md, latency.png)"
                )


@bench_app.command("capacity")
def capacity_plan(
    results: Annotated[
        Path, typer.Argument(help="results.json of a `churn-mlops bench` run, or its folder.")
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
    pg_max_connections: Annotated[
        int, typer.Option(min=1, help="PostgreSQL's max_connections.")
    ] = ClusterShape.pg_max_connections,
) -> None:
    """Pods, cores, connections and cost per million requests for target loads, from a bench run.

    The HPA's targets and the pods' requests are those of deploy/k8s/base; the plan shows them
    next to an RPS target taken from the measured capacity (docs/capacity.md).
    """
    shape = ClusterShape(
        price_per_core_hour=price_per_core_hour,
        db_pool_size=db_pool_size,
        db_max_overflow=db_max_overflow,
        pg_max_connections=pg_max_connections,
    )
    try:
        loads = [float(value) for value in _csv(targets)]
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
    sys.stdout.write(
        capacity_markdown(
            throughputs,
            loads,
            shape,
            p99_target_ms=p99_target_ms,
            source=str(document["meta"].get("command", results)),
        )
    )
