"""The db suite: the customer endpoints on PostgreSQL at size.

Seeds a dedicated database (`benchmarks.db_seed`; reused when it already holds the rows asked
for), starts the service with the seed's N+1 listing added (`benchmarks.db_app`), and measures
with wrk:

- `GET /customers/{id}` on random customers;
- `GET /customers?limit=50&after=<random>` (ours: one statement per page) against the seed's
  listing of the same pages (one statement per customer), interleaved: in each round both run
  back to back, the one going first alternating, and the report gives medians and their ratio.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.constants import (
    COMMAND,
    DEFAULT_DB_URL,
    REQUEST_TIMEOUT_S,
    WORK_DIR_PREFIX,
    WORKERS,
    WRK_THREADS,
)
from benchmarks.db_app import N_PLUS_ONE_PATH
from benchmarks.db_report import DbReportMeta, DbRun, listing_ratios, markdown, summarise
from benchmarks.db_seed import database_size, prepare_database
from benchmarks.http_ab import load_with_cpu
from benchmarks.load import WRK_SCRIPT, LoadResult, Wrk
from benchmarks.servers import (
    RunningServer,
    ServerSpec,
    start_server,
    uvicorn_server,
    wait_until_idle,
)
from churn_mlops.db.seed import synthetic_id

PAGE_SIZE = 50
DISTINCT_REQUESTS = 20_000
Log = Callable[[str], None]

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

    @property
    def command(self) -> str:
        return (
            f"{COMMAND} db --customers {self.customers} --predictions {self.predictions}"
            f" --connections {self.connections} --duration {self.duration_s}s"
            f" --warmup {self.warmup_s}s --rounds {self.rounds}"
        )


@dataclass(frozen=True)
class Workload:
    name: str
    label: str
    paths: Path


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
        "benchmarks.db_app:create_app_from_env",
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
) -> tuple[LoadResult, float, float]:
    """The measured run, and the service's and the local PostgreSQL's CPU microseconds per
    answered request over it (`load_with_cpu`)."""

    def load(seconds: int) -> LoadResult:
        return wrk.run(
            server.port,
            "/",
            workload.paths,
            connections=options.connections,
            duration_s=seconds,
            threads=WRK_THREADS,
            timeout_s=REQUEST_TIMEOUT_S,
        )

    if options.warmup_s:
        load(options.warmup_s)
        wait_until_idle(server)
    return load_with_cpu(server, lambda: load(options.duration_s))


def run_rounds(
    wrk: GetWrk,
    server: RunningServer,
    loads: tuple[Workload, Workload, Workload],
    options: DbBenchOptions,
    log: Log,
) -> list[DbRun]:
    detail, ours, seed_listing = loads
    runs: list[DbRun] = []
    for number in range(options.rounds):
        pair = (ours, seed_listing) if number % 2 == 0 else (seed_listing, ours)
        for workload in (detail, *pair):
            result, service_us, database_us = _measure(wrk, server, workload, options)
            runs.append(
                DbRun(workload.name, workload.label, number, result, service_us, database_us)
            )
            log(
                f"[round {number + 1}/{options.rounds}] {workload.label:<55} "
                f"{result.rps:>8,.1f} req/s  p50 {result.latency_ms['p50']:.2f} ms  "
                f"p99 {result.latency_ms['p99']:.2f} ms  failed {result.failed:,}  "
                f"CPU us/request: service {service_us:.1f}, PostgreSQL {database_us:.1f}"
            )
    return runs


def run_db_suite(options: DbBenchOptions, log: Log) -> str:
    """Prepare, measure, write results.json and report.md to `options.out_dir`; the report."""
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    id_range = prepare_database(options.url, options.customers, options.predictions, log)
    sizes = database_size(options.url)
    with tempfile.TemporaryDirectory(prefix=f"{WORK_DIR_PREFIX}db-") as work_name:
        work = Path(work_name)
        wrk = GetWrk(work)
        loads = workloads(work, min(options.customers, sizes[0]), id_range)
        with start_server(server_spec(options), options.out_dir / "logs") as server:
            log(f"started the service on port {server.port} (log: {server.log_path})")
            runs = run_rounds(wrk, server, loads, options, log)
    meta = DbReportMeta(
        started,
        options.command,
        options.connections,
        options.rounds,
        options.warmup_s,
        options.duration_s,
    )
    report = markdown(summarise(runs), meta, sizes, listing_ratios(runs))
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
            {
                "workload": r.name,
                "label": r.label,
                "round": r.round,
                **r.result.to_dict(),
                "service_cpu_us": r.service_cpu_us,
                "database_cpu_us": r.database_cpu_us,
            }
            for r in runs
        ],
    }
    (options.out_dir / "results.json").write_text(json.dumps(document, indent=2))
    return report
