"""The `v2` suite: the Open Inference Protocol against the service's own JSON, on one server.

One `churn-mlops serve --workers 2 --grpc-port N` answers everything, so every comparison is of
protocols, not of servers: single rows at 32 connections as `POST /predict` (wrk), as V2 JSON
infer (wrk) and as gRPC `ModelInfer` (32 concurrent calls from h2load, a C client as wrk is,
which the target is read from, and from grpc.aio clients in processes of their own, which show
what a Python caller gets); 10,000-row requests as JSON `/predict/batch` and as V2 binary
infer with binary outputs (both from the same httpx client, since wrk's bodies file cannot carry
binary bodies). In each
round the single-row workloads take turns going first, and so do the two batch ones; every run
gets its warm-up and the server is left to go idle before the next. Bodies are built before the
server starts (`benchmarks.v2_bodies`), from real customers, different in every request (h2load:
one customer per h2load process, benchmarks/grpc_h2load.py).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.constants import COMMAND, DISTINCT_CUSTOMERS, REQUEST_TIMEOUT_S, WORK_DIR_PREFIX
from benchmarks.grpc_h2load import run_h2load
from benchmarks.inprocess import turns
from benchmarks.load import Wrk, batch_bodies, prediction_bodies, write_bodies
from benchmarks.servers import (
    RunningServer,
    ServerSpec,
    churn_service,
    free_port,
    provision_credentials,
    start_server,
    wait_until_idle,
)
from benchmarks.terminal import log
from benchmarks.v2_bodies import (
    HEADER_LENGTH,
    INFER_PATH,
    batches,
    binary_body,
    grpc_request,
    json_body,
    single_rows,
)
from benchmarks.v2_clients import (
    ClientResult,
    post_bodies,
    read_messages,
    run_grpc_processes,
    write_messages,
)
from benchmarks.v2_report import Measurement, render
from churn_mlops.data import load_telco_csv

SINGLE_WORKLOADS = ("predict", "v2-json", "grpc-h2load", "grpc")
BATCH_WORKLOADS = ("batch-json", "v2-binary")
SERVER_ENV = {"CHURN_CACHE_ENABLED": "false", "CHURN_PREDICTION_LOG_ENABLED": "false"}
"""The model path only: no prediction cache, nothing written per prediction."""
BATCH_BODY_COUNT = 4


@dataclass(frozen=True)
class V2BenchOptions:
    model_dir: Path
    model_version: str
    out_dir: Path
    connections: int
    grpc_processes: int
    batch_rows: int
    batch_concurrency: int
    duration_s: int
    warmup_s: int
    rounds: int

    @property
    def command(self) -> str:
        return (
            f"{COMMAND} v2 --connections {self.connections} --grpc-processes "
            f"{self.grpc_processes} --batch-rows {self.batch_rows} --batch-concurrency "
            f"{self.batch_concurrency} --duration {self.duration_s}s --warmup {self.warmup_s}s "
            f"--rounds {self.rounds}"
        )


def round_plan(round_: int) -> list[str]:
    """The workloads of a round in order: the single-row ones, then the batch ones, each group
    rotated by the round so that each goes first as often as the others."""
    return [*turns(SINGLE_WORKLOADS, round_), *turns(BATCH_WORKLOADS, round_)]


@dataclass(frozen=True)
class _Files:
    predict: Path
    v2_json: Path
    grpc: Path
    batch_json: list[tuple[bytes, dict[str, str]]]
    v2_binary: list[tuple[bytes, dict[str, str]]]


def build_bodies(work: Path, batch_rows: int, api_key: str | None) -> _Files:
    """Every body of the run, built once."""
    dataset = load_telco_csv()
    singles = single_rows(dataset, DISTINCT_CUSTOMERS)
    key = {"X-API-Key": api_key} if api_key else {}
    # Neither batch client asks for a compressed answer: the two protocols are compared on the
    # same work (httpx would send gzip, deflate by default).
    json_headers = {"Content-Type": "application/json", "Accept-Encoding": "identity", **key}
    binary = []
    for ids, rows in batches(dataset, batch_rows, BATCH_BODY_COUNT):
        body, header_length = binary_body(ids, rows)
        headers = {
            "Content-Type": "application/octet-stream",
            HEADER_LENGTH: str(header_length),
            # As stock tritonclient.http sends it: no Accept-Encoding (httpx would add gzip,
            # and the service would then compress the binary outputs: 19 % of its CPU here).
            "Accept-Encoding": "identity",
            **key,
        }
        binary.append((body, headers))
    return _Files(
        predict=write_bodies(
            work / "predict.jsonl", prediction_bodies(dataset, DISTINCT_CUSTOMERS)
        ),
        v2_json=write_bodies(work / "v2.jsonl", (json_body(i, r) for i, r in singles)),
        grpc=write_messages(work / "grpc.bin", (grpc_request(i, r) for i, r in singles)),
        batch_json=[
            (body, json_headers) for body in batch_bodies(dataset, batch_rows, BATCH_BODY_COUNT)
        ],
        v2_binary=binary,
    )


def v2_server(model_dir: Path, work: Path, grpc_port: int) -> ServerSpec:
    """The service with an API key, REST and gRPC, the model path only."""
    spec = churn_service(
        model_dir, env=SERVER_ENV, name="v2", credentials=provision_credentials(work)
    )
    return ServerSpec(
        spec.name,
        (*spec.argv, "--grpc-port", str(grpc_port)),
        spec.workers,
        spec.ready_path,
        spec.env,
        spec.api_key,
    )


def _from_client(
    workload: str, round_: int, result: ClientResult, rows: int, concurrency: int, client: str
) -> Measurement:
    return Measurement(
        workload=workload,
        round=round_,
        requests_per_s=result.rps,
        rows_per_request=rows,
        p99_ms=result.percentile_ms(99),
        failures=result.failures,
        concurrency=concurrency,
        client=client,
        client_cpu_percent=result.cpu_s / result.duration_s * 100 if result.duration_s else None,
    )


def _runner(
    options: V2BenchOptions, server: RunningServer, grpc_port: int, files: _Files, wrk: Wrk
) -> Callable[[str, int, int], Measurement]:
    """run(workload, round, seconds): one run of a workload (a warm-up is a run not kept)."""
    key = server.spec.api_key

    def run(workload: str, round_: int, seconds: int) -> Measurement:
        if workload in ("predict", "v2-json"):
            path, bodies = ("/predict", files.predict)
            if workload == "v2-json":
                path, bodies = INFER_PATH, files.v2_json
            loaded = wrk.run(
                server.port,
                path,
                bodies,
                connections=options.connections,
                duration_s=seconds,
                timeout_s=REQUEST_TIMEOUT_S,
                api_key=key,
            )
            return Measurement(
                workload, round_, loaded.rps, 1, loaded.latency_ms["p99"], loaded.failed,
                options.connections, "wrk",
            )  # fmt: skip
        if workload == "grpc-h2load":
            result = run_h2load(
                grpc_port,
                server.port,
                read_messages(files.grpc),
                processes=options.grpc_processes,
                streams=options.connections,
                duration_s=seconds,
                api_key=key,
            )
            client = f"h2load x{options.grpc_processes}"
            return _from_client(workload, round_, result, 1, options.connections, client)
        if workload == "grpc":
            result = run_grpc_processes(
                grpc_port,
                files.grpc,
                processes=options.grpc_processes,
                streams=options.connections,
                duration_s=seconds,
                warmup_s=0,
                api_key=key,
            )
            client = f"grpc.aio x{options.grpc_processes}"
            return _from_client(workload, round_, result, 1, options.connections, client)
        path, posted = (
            ("/predict/batch", files.batch_json)
            if workload == "batch-json"
            else (INFER_PATH, files.v2_binary)
        )
        result = asyncio.run(
            post_bodies(
                server.port,
                path,
                posted,
                concurrency=options.batch_concurrency,
                duration_s=seconds,
                warmup_s=0,
            )
        )
        return _from_client(
            workload, round_, result, options.batch_rows, options.batch_concurrency, "httpx"
        )

    return run


def measure(options: V2BenchOptions) -> list[Measurement]:
    """Every round of every workload against one server."""
    measurements: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix=f"{WORK_DIR_PREFIX}v2-") as work_name:
        work = Path(work_name)
        grpc_port = free_port()
        log("creating the bench's API key (churn-mlops keys create)")
        spec = v2_server(options.model_dir, work, grpc_port)
        log(f"building the bodies ({options.batch_rows:,}-row batches)")
        files = build_bodies(work, options.batch_rows, spec.api_key)
        with start_server(spec, options.out_dir / "logs") as server:
            log(f"started the service: REST on {server.port}, gRPC on {grpc_port}")
            run = _runner(options, server, grpc_port, files, Wrk(work))
            for round_ in range(options.rounds):
                for workload in round_plan(round_):
                    if options.warmup_s:
                        run(workload, round_, options.warmup_s)
                        wait_until_idle(server)
                    measured = run(workload, round_, options.duration_s)
                    wait_until_idle(server)
                    measurements.append(measured)
                    log(
                        f"round {round_ + 1} {workload:<10} {measured.requests_per_s:>9,.1f} "
                        f"req/s {measured.rows_per_s:>12,.0f} rows/s  p99 "
                        f"{measured.p99_ms:.2f} ms  failed {measured.failures:,}"
                    )
    return measurements


def run_v2_suite(options: V2BenchOptions) -> str:
    """Run the suite; the markdown report (also written to `options.out_dir`)."""
    started = datetime.now(UTC)
    measurements = measure(options)
    meta = {
        "command": options.command,
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "rounds": options.rounds,
        "duration_s": options.duration_s,
        "warmup_s": options.warmup_s,
        "model_version": options.model_version,
    }
    report = render(measurements, meta)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    (options.out_dir / "v2-report.md").write_text(report)
    document = {**meta, "runs": [asdict(m) for m in measurements]}
    (options.out_dir / "v2-results.json").write_text(json.dumps(document, indent=2))
    return report
