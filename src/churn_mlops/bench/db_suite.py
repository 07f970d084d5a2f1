"""`churn-mlops bench --suite db`: the customer endpoints on PostgreSQL at size.

Seeds a dedicated database (reused when it already holds the rows asked for), starts the service
with the seed's N+1 listing added (`bench.db_app`), and measures with wrk:

- `GET /customers/{id}` on random customers;
- `GET /customers?limit=50&after=<random>` (ours: one statement per page) against the seed's
  listing of the same pages (one statement per customer), interleaved: in each round both run
  back to back, the one going first alternating, and the report gives medians and their ratio.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from churn_mlops.bench.db_app import N_PLUS_ONE_PATH
from churn_mlops.bench.load import WRK_SCRIPT, LoadResult, Wrk
from churn_mlops.bench.servers import (
    RunningServer,
    ServerSpec,
    start_server,
    uvicorn_server,
    wait_until_idle,
)
from churn_mlops.db import schema
from churn_mlops.db.cli import seed_with_progress
from churn_mlops.db.engine import Database, async_database_url, create_engine
from churn_mlops.db.models import Customer
from churn_mlops.db.seed import SYNTHETIC_PREFIX, synthetic_id

DEFAULT_DB_URL = "postgresql://postgres@127.0.0.1:5432/churn_bench"
PAGE_SIZE = 50
DISTINCT_REQUESTS = 20_000
WORKERS = 2
WRK_THREADS = 2

# GET requests read from a file of paths (one per line); `done` is the default suite's, so the
# result line is the same and `parse_wrk_output` reads it.
GET_SCRIPT = r"""
local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

function init(args)
  requests = {}
  for line in io.lines(args[1]) do
    if #line > 0 then
      requests[#requests + 1] = wrk.format("GET", line)
    end
  end
  if #requests == 0 then
    error("no request paths in " .. args[1])
  end
  thread_count = tonumber(args[2])
  position = (thread_index * math.floor(#requests / thread_count)) % #requests
  statuses = {}
  cached = 0
  fresh_sent = 0
end

function request()
  position = position % #requests + 1
  return requests[position]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

""" + WRK_SCRIPT[WRK_SCRIPT.index("function done") :]


class GetWrk(Wrk):
    """wrk sending GET requests to the paths of a file, in turn."""

    def __init__(self, work_dir: Path, executable: str | None = None) -> None:
        super().__init__(work_dir, executable)
        self.script = work_dir / "bench-get.lua"
        self.script.write_text(GET_SCRIPT)


@dataclass(frozen=True)
class DbBenchOptions:
    model_dir: Path
    out_dir: Path
    url: str = DEFAULT_DB_URL
    customers: int = 1_000_000
    predictions: int = 5_000_000
    duration_s: int = 10
    warmup_s: int = 2
    rounds: int = 3
    connections: int = 32
    command: str = ""


@dataclass(frozen=True)
class DbRun:
    name: str
    label: str
    round: int
    result: LoadResult


@dataclass(frozen=True)
class Workload:
    name: str
    label: str
    paths: Path


async def _create_database(url: str) -> None:
    """CREATE DATABASE for `url` unless it exists, through the server's `postgres` database."""
    target = make_url(async_database_url(url))
    name = target.database
    engine = create_engine(target.set(database="postgres").render_as_string(hide_password=False))
    try:
        async with engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            exists = await autocommit.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if not exists:
                await autocommit.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        await engine.dispose()


async def _id_range(url: str) -> tuple[int, int]:
    database = Database.from_url(url)
    try:
        async with database.engine.begin() as connection:
            await connection.exec_driver_sql("ANALYZE")
            low, high = (
                await connection.execute(select(func.min(Customer.id), func.max(Customer.id)))
            ).one()
    finally:
        await database.dispose()
    return int(low), int(high)


def prepare_database(options: DbBenchOptions, log: Any = print) -> tuple[int, int]:
    """Create, migrate and seed the bench database (only what is missing); its id range."""
    asyncio.run(_create_database(options.url))
    schema.upgrade(options.url)
    customers, predictions = asyncio.run(
        seed_with_progress(
            options.url,
            dataset=False,
            synthetic=options.customers,
            predictions=options.predictions,
        )
    )
    log(f"bench database: {customers:,} customers, {predictions:,} predictions")
    return asyncio.run(_id_range(options.url))


def write_paths(path: Path, paths: Sequence[str]) -> Path:
    path.write_text("\n".join(paths) + "\n")
    return path


def workloads(
    work: Path, customers: int, id_range: tuple[int, int], seed: int = 7
) -> tuple[Workload, Workload, Workload]:
    """Random customers for the detail, random pages for both listings (the same pages)."""
    rng = random.Random(seed)  # noqa: S311 - load generation, not security
    ids = [synthetic_id(rng.randrange(customers)) for _ in range(DISTINCT_REQUESTS)]
    low, high = id_range
    afters = [rng.randint(low - 1, max(high - PAGE_SIZE, low)) for _ in range(DISTINCT_REQUESTS)]
    detail = Workload(
        "detail",
        "GET /customers/{id} (10 recent predictions)",
        write_paths(work / "detail.txt", [f"/customers/{i}" for i in ids]),
    )
    ours = Workload(
        "listing",
        f"GET /customers?limit={PAGE_SIZE} (1 statement)",
        write_paths(
            work / "listing.txt", [f"/customers?limit={PAGE_SIZE}&after={a}" for a in afters]
        ),
    )
    seed_listing = Workload(
        "n-plus-one",
        f"seed's N+1 listing, limit={PAGE_SIZE} (1 + {PAGE_SIZE} statements)",
        write_paths(
            work / "n-plus-one.txt",
            [f"{N_PLUS_ONE_PATH}?limit={PAGE_SIZE}&after={a}" for a in afters],
        ),
    )
    return detail, ours, seed_listing


def server_spec(options: DbBenchOptions) -> ServerSpec:
    return uvicorn_server(
        "service-db",
        "churn_mlops.bench.db_app:create_app_from_env",
        workers=WORKERS,
        ready_path="/health/ready",
        env={
            "CHURN_MODEL_DIR": str(options.model_dir),
            "CHURN_DATABASE_URL": options.url,
            "CHURN_AUTH_ENABLED": "false",
            "CHURN_PREDICTION_LOG_ENABLED": "false",
            "CHURN_LOG_LEVEL": "INFO",
        },
    )


def _measure(
    wrk: GetWrk, server: RunningServer, workload: Workload, options: DbBenchOptions
) -> LoadResult:
    if options.warmup_s:
        wrk.run(
            server.port,
            "/",
            workload.paths,
            connections=options.connections,
            duration_s=options.warmup_s,
            threads=WRK_THREADS,
            timeout_s=5,
        )
        wait_until_idle(server)
    result = wrk.run(
        server.port,
        "/",
        workload.paths,
        connections=options.connections,
        duration_s=options.duration_s,
        threads=WRK_THREADS,
        timeout_s=5,
    )
    wait_until_idle(server)
    return result


def run_rounds(
    wrk: GetWrk,
    server: RunningServer,
    loads: tuple[Workload, Workload, Workload],
    options: DbBenchOptions,
    log: Any = print,
) -> list[DbRun]:
    detail, ours, seed_listing = loads
    runs: list[DbRun] = []
    for number in range(options.rounds):
        pair = (ours, seed_listing) if number % 2 == 0 else (seed_listing, ours)
        for workload in (detail, *pair):
            result = _measure(wrk, server, workload, options)
            runs.append(DbRun(workload.name, workload.label, number, result))
            log(
                f"[round {number + 1}/{options.rounds}] {workload.label:<55} "
                f"{result.rps:>8,.1f} req/s  p50 {result.latency_ms['p50']:.2f} ms  "
                f"p99 {result.latency_ms['p99']:.2f} ms  failed {result.failed:,}"
            )
    return runs


@dataclass(frozen=True)
class Summary:
    label: str
    rps: float
    p50: float
    p99: float
    failed: int
    rounds: int


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
        )
        for name, group in by_name.items()
    }


def markdown(
    summaries: dict[str, Summary],
    options: DbBenchOptions,
    sizes: tuple[int, int],
    started: str,
    round_ratios: Sequence[float] = (),
) -> str:
    lines = [
        f"DB bench, {started}: PostgreSQL with {sizes[0]:,} customers and {sizes[1]:,} "
        f"predictions; {WORKERS} uvicorn workers, wrk c={options.connections}, "
        f"{options.rounds} rounds of {options.warmup_s}+{options.duration_s} s, medians.",
        "",
        f"Command: `{options.command}`",
        "",
        "| workload | req/s | p50 ms | p99 ms | failed |",
        "|---|---:|---:|---:|---:|",
    ]
    for summary in summaries.values():
        lines.append(
            f"| {summary.label} | {summary.rps:,.1f} | {summary.p50:.2f} | {summary.p99:.2f} "
            f"| {summary.failed:,} |"
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


def run_db_suite(options: DbBenchOptions, log: Any = print) -> str:
    """Prepare, measure, write results.json and report.md to `options.out_dir`; the report."""
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    id_range = prepare_database(options, log)
    sizes = asyncio.run(_sizes(options.url))
    with tempfile.TemporaryDirectory(prefix="churn-bench-db-") as work_name:
        work = Path(work_name)
        wrk = GetWrk(work)
        loads = workloads(work, min(options.customers, sizes[0]), id_range)
        with start_server(server_spec(options), options.out_dir / "logs") as server:
            log(f"started the service on port {server.port} (log: {server.log_path})")
            runs = run_rounds(wrk, server, loads, options, log)
    summaries = summarise(runs)
    report = markdown(summaries, options, sizes, started, listing_ratios(runs))
    options.out_dir.mkdir(parents=True, exist_ok=True)
    (options.out_dir / "report.md").write_text(report)
    document = {
        "meta": {
            "started": started,
            "command": options.command,
            "customers": sizes[0],
            "predictions": sizes[1],
            "connections": options.connections,
            "duration_s": options.duration_s,
            "warmup_s": options.warmup_s,
            "rounds": options.rounds,
            "workers": WORKERS,
            "wrk_version": wrk.version(),
        },
        "runs": [
            {"workload": r.name, "label": r.label, "round": r.round, **r.result.to_dict()}
            for r in runs
        ],
    }
    (options.out_dir / "results.json").write_text(json.dumps(document, indent=2))
    return report


async def _sizes(url: str) -> tuple[int, int]:
    database = Database.from_url(url)
    try:
        async with database.engine.connect() as connection:
            customers = await connection.scalar(
                select(func.count())
                .select_from(Customer)
                .where(Customer.external_id.like(f"{SYNTHETIC_PREFIX}%"))
            )
            predictions = await connection.exec_driver_sql("SELECT count(*) FROM predictions")
            return int(customers or 0), int(predictions.scalar() or 0)
    finally:
        await database.dispose()


def run_db_suite_from_cli(
    *,
    model_dir: Path | None,
    out: Path | None,
    duration: str,
    warmup: str,
    rounds: int,
    url: str,
    customers: int,
    predictions: int,
    connections: int,
) -> None:
    """`churn-mlops bench --suite db`, options parsed, the model trained if missing."""
    import sys

    import typer
    from rich.console import Console

    from churn_mlops.bench.load import LoadError, parse_duration
    from churn_mlops.bench.servers import ServerError
    from churn_mlops.data import SHIPPED_DATASET
    from churn_mlops.db.engine import DatabaseURLError, is_sqlite
    from churn_mlops.model.provisioning import ensure_model
    from churn_mlops.settings import Settings

    console = Console(stderr=True)
    try:
        duration_s, warmup_s = parse_duration(duration), parse_duration(warmup)
        if is_sqlite(url):
            raise typer.BadParameter("the db suite measures PostgreSQL", param_hint="--db-url")
    except (ValueError, DatabaseURLError) as error:
        raise typer.BadParameter(str(error)) from None
    if duration_s < 1:
        raise typer.BadParameter("runs last at least 1s", param_hint="--duration")
    settings = Settings()
    served = (model_dir or settings.model_dir).resolve()
    ensure_model(served, settings.data_path or SHIPPED_DATASET, "bench")
    started = datetime.now(UTC)
    command = (
        f"churn-mlops bench --suite db --db-customers {customers} --db-predictions {predictions}"
        f" --db-connections {connections} --duration {duration_s}s --warmup {warmup_s}s"
        f" --rounds {rounds}"
    )
    options = DbBenchOptions(
        model_dir=served,
        out_dir=out or Path("bench-results") / started.strftime("db-%Y%m%dT%H%M%SZ"),
        url=url,
        customers=customers,
        predictions=predictions,
        duration_s=duration_s,
        warmup_s=warmup_s,
        rounds=rounds,
        connections=connections,
        command=command,
    )
    try:
        report = run_db_suite(options, log=lambda text: console.print(text, soft_wrap=True))
    except (ServerError, LoadError) as error:
        console.print(f"[red]bench stopped:[/] {error}")
        raise typer.Exit(1) from None
    sys.stdout.write(report)
    console.print(f"Results written to {options.out_dir}/ (results.json, report.md)")
