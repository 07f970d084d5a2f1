"""`churn-mlops bench`: start every server, load each in turn with wrk, report side by side."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from churn_mlops.bench.load import (
    LoadError,
    LoadResult,
    Wrk,
    batch_bodies,
    parse_duration,
    prediction_bodies,
    write_bodies,
)
from churn_mlops.bench.plan import SERVERS, Run, plan_runs
from churn_mlops.bench.report import LABELS, BenchMeta, Measurement, write_results
from churn_mlops.bench.servers import (
    RunningServer,
    ServerError,
    ServerSpec,
    bench_servers,
    log_tail,
    start_server,
    wait_until_idle,
)
from churn_mlops.console import ensure_model
from churn_mlops.data import SHIPPED_DATASET, load_telco_csv
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

bench_app = typer.Typer(
    help="Benchmark the service against a naive baseline and two do-nothing ceilings.",
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
    """The bodies file of each rows-per-request the runs use."""
    dataset = load_telco_csv()
    files = {}
    for rows in sorted({run.rows for run in runs}):
        bodies = (
            prediction_bodies(dataset, DISTINCT_CUSTOMERS)
            if rows == 1
            else batch_bodies(dataset, rows, BATCH_BODIES)
        )
        files[rows] = write_bodies(work / f"bodies-{rows}.jsonl", bodies)
    return files


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
    return line


def _settle(server: RunningServer, after: str) -> None:
    with console.status(f"waiting for {server.spec.name} to finish the requests left queued"):
        waited = wait_until_idle(server)
    if waited > 2:
        console.print(f"  {server.spec.name} stayed busy for {waited:.1f} s after the {after}")


def _measure(
    wrk: Wrk,
    server: RunningServer,
    run: Run,
    bodies: Path,
    duration_s: int,
    warmup_s: int,
    title: str,
) -> LoadResult:
    """Warm up, let the server drain, measure, let it drain again: each run starts idle."""
    if server.process.poll() is not None:
        raise ServerError(
            f"{server.spec.name} died (exit {server.process.returncode}):\n"
            + log_tail(server.log_path)
        )
    options = {"connections": run.connections, "threads": WRK_THREADS, "timeout_s": run.timeout_s}
    if warmup_s:
        with console.status(f"{title}: {warmup_s} s warm-up"):
            wrk.run(server.port, run.path, bodies, duration_s=warmup_s, **options)
        _settle(server, "warm-up")
    with console.status(f"{title}: measuring for {duration_s} s"):
        result = wrk.run(server.port, run.path, bodies, duration_s=duration_s, **options)
    _settle(server, "run")
    return result


def _run_all(
    wrk: Wrk,
    servers: Mapping[str, RunningServer],
    runs: Sequence[Run],
    bodies: Mapping[int, Path],
    duration_s: int,
    warmup_s: int,
    measurements: list[Measurement],
) -> None:
    width = len(str(len(runs)))
    for number, run in enumerate(runs, start=1):
        rows = f" {run.rows:,} rows" if run.rows > 1 else ""
        title = (
            f"[{number:>{width}}/{len(runs)}] {run.server:<7} {run.scenario}{rows} "
            f"c={run.connections}"
        )
        server = servers[run.server]
        result = _measure(wrk, server, run, bodies[run.rows], duration_s, warmup_s, title)
        measurements.append(Measurement(run, result))
        console.print(f"{title:<40} {_describe(run, result)}", soft_wrap=True)
        if result.requests == 0:
            console.print(
                f"[yellow]  no answer within the run: {run.server} is stuck or slower than "
                f"{duration_s} s per request; see {server.log_path}[/]"
            )


def _parse_run_options(
    connections: str, only: str, duration: str, warmup: str
) -> tuple[list[int], list[str], int, int]:
    try:
        levels = [int(item) for item in _csv(connections)]
        if not levels or min(levels) < 1:
            raise ValueError
    except ValueError:
        raise typer.BadParameter(
            "give positive integers like 1,32,128", param_hint="--connections"
        ) from None
    selected = _csv(only)
    if unknown := sorted(set(selected) - set(SERVERS)):
        raise typer.BadParameter(f"unknown server(s) {', '.join(unknown)}", param_hint="--only")
    try:
        duration_s, warmup_s = parse_duration(duration), parse_duration(warmup)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if duration_s < 1:
        raise typer.BadParameter("runs last at least 1s", param_hint="--duration")
    return levels, selected, duration_s, warmup_s


def _start(stack: ExitStack, spec: ServerSpec, log_dir: Path) -> RunningServer:
    """Start a server whose stop `stack` owns, so that leaving the stack stops it."""
    began = time.monotonic()
    with console.status(f"starting {LABELS.get(spec.name, spec.name)}"):
        server = stack.enter_context(start_server(spec, log_dir))
    console.print(
        f"started {LABELS.get(spec.name, spec.name)} on port {server.port} "
        f"in {time.monotonic() - began:.1f} s (log: {server.log_path})"
    )
    return server


@bench_app.callback(invoke_without_command=True)
def bench(
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
        str, typer.Option(help=f"Comma-separated servers to run, of {','.join(SERVERS)}.")
    ] = ",".join(SERVERS),
    overload_connections: Annotated[
        int,
        typer.Option(min=0, help="Connections of the overload run against the service; 0: none."),
    ] = 512,
    service_env: Annotated[
        list[str] | None,
        typer.Option(
            help="KEY=VALUE for the service's environment; repeatable; "
            "CHURN_CACHE_ENABLED=false unless given."
        ),
    ] = None,
    price_per_core_hour: Annotated[
        float, typer.Option(min=0, help="USD per core-hour, for the cost per million requests.")
    ] = 0.04,
) -> None:
    """Compare the naive baseline, the service and two ceilings under the same wrk load.

    Every server runs with 2 uvicorn workers on a free 127.0.0.1 port; at each connection level
    the servers take turns going first. Then /predict/batch with 1,000 and 10,000 rows, and an
    overload run against the service. Results go to results.json, report.md and latency.png.
    """
    levels, selected, duration_s, warmup_s = _parse_run_options(connections, only, duration, warmup)
    env = _parse_env(service_env or [])
    runs = plan_runs(selected, levels, rounds=rounds, overload_connections=overload_connections)
    started = datetime.now(UTC)
    out_dir = out or Path("bench-results") / started.strftime("%Y%m%dT%H%M%SZ")
    artifact, served = None, None
    if {"naive", "service"} & set(selected):
        served = (model_dir or Settings().model_dir).resolve()
        artifact = ensure_model(served, Settings().data_path or SHIPPED_DATASET, "bench")
    specs = bench_servers(served, workers=WORKERS, service_env=env)

    with tempfile.TemporaryDirectory(prefix="churn-bench-") as work_name:
        work = Path(work_name)
        try:
            wrk = Wrk(work)
        except LoadError as error:
            console.print(f"[red]{error}[/]")
            raise typer.Exit(2) from None
        meta = BenchMeta(
            started=started.strftime("%Y-%m-%d %H:%M UTC"),
            command=(
                f"churn-mlops bench --connections {','.join(map(str, levels))} "
                f"--duration {duration_s}s --warmup {warmup_s}s --rounds {rounds} "
                f"--only {','.join(selected)} --overload-connections {overload_connections}"
            ),
            duration_s=duration_s,
            warmup_s=warmup_s,
            rounds=rounds,
            workers=WORKERS,
            cores=WORKERS,
            price_per_core_hour=price_per_core_hour,
            wrk_version=wrk.version(),
            model_version=artifact.version if artifact else None,
            service_env=env if "service" in selected else {},
        )
        bodies = _write_bodies(work, runs)
        minutes = len(runs) * (duration_s + warmup_s) / 60
        console.print(
            f"{len(runs)} runs of {warmup_s}+{duration_s} s (about {minutes:.1f} min of load) "
            f"on {os.cpu_count()} cores; results in {out_dir}"
        )
        measurements: list[Measurement] = []
        try:
            with _sigterm_unwinds(), ExitStack() as stack:
                running = {
                    name: _start(stack, specs[name], out_dir / "logs")
                    for name in SERVERS
                    if name in selected
                }
                _run_all(wrk, running, runs, bodies, duration_s, warmup_s, measurements)
        except (ServerError, LoadError) as error:
            console.print(f"[red]bench stopped:[/] {error}")
            raise typer.Exit(1) from None
        finally:
            # Also after Ctrl-C or a failure: what was measured is kept.
            if measurements:
                _, report = write_results(out_dir, meta, measurements)
                sys.stdout.write(report)
                console.print(
                    f"Results written to {out_dir}/ (results.json, report.md, latency.png)"
                )
