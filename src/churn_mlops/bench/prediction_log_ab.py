"""What the prediction log costs the request path, measured two ways.

1. `record()` alone: nanoseconds per call on this machine (a writer that never flushes, so
   nothing else runs).
2. `POST /predict` RPS and latency of the real service (`churn-mlops serve`, PostgreSQL) with
   the log off and on, the two servers up side by side and measured in alternating order
   (A B, B A, A B, ...) so that the machine's drift hits both alike; medians per server.

    python -m churn_mlops.bench.prediction_log_ab --database-url postgresql://...  [--rounds 5]

Run it under `flock /tmp/churn-bench.lock` on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from churn_mlops.bench.load import Wrk, prediction_bodies, write_bodies
from churn_mlops.bench.servers import (
    RunningServer,
    churn_service,
    group_members,
    start_server,
    wait_until_idle,
)
from churn_mlops.data import load_telco_csv
from churn_mlops.db import schema
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Prediction
from churn_mlops.db.prediction_log import PredictionLogWriter
from churn_mlops.model.artifact import ModelArtifact


class _NoSink:
    async def write(self, rows: Sequence[object]) -> int:
        return len(rows)


def record_cost_ns(calls: int = 500, batches: int = 2000, repeats: int = 5) -> list[int]:
    """Nanoseconds per `record()` call, one figure per repeat: `batches` times `calls` calls,
    the buffer emptied after each `calls` (as the flusher does with its batches; the emptying
    is not timed)."""
    with tempfile.TemporaryDirectory() as directory:
        writer = PredictionLogWriter(_NoSink(), Path(directory) / "spill.jsonl", batch_rows=calls)
        record, buffer = writer.record, writer._buffer
        figures = []
        for _ in range(repeats):
            elapsed = 0
            for _ in range(batches):
                start = time.perf_counter_ns()
                for _ in range(calls):
                    record("7590-VHVEG", 0.4242, True, False, 0.8, "v479bc1ffc06d")
                elapsed += time.perf_counter_ns() - start
                buffer.clear()  # the flusher's job, which is not running here
            figures.append(round(elapsed / (calls * batches)))
    return figures


def _cpu_seconds(server: RunningServer) -> float:
    """CPU time the server's processes (master and workers) used so far; 0 without /proc."""
    members = group_members(server.process.pid) or []
    return sum(ticks for _, _, ticks in members) / os.sysconf("SC_CLK_TCK")


async def _count_rows(url: str) -> int:
    database = Database.from_url(url)
    try:
        async with database.engine.connect() as connection:
            count = (await connection.execute(select(func.count(Prediction.id)))).scalar_one()
            return int(count)
    finally:
        await database.dispose()


def in_process_cpu(
    database_url: str, model_dir: Path, blocks: int, block_requests: int, cache: bool = False
) -> dict[str, list[float]]:
    """CPU microseconds per request of two apps, log on and off, in this process: raw ASGI
    `POST /predict` calls one after the other, alternating blocks; a block of the log-on app
    is measured until its writer has written every row (the database's own work, in another
    process, is left out). Prediction cache off unless `cache` (then every request after the
    warm-up is a hit: the cheapest request, where the log weighs most); no authentication."""
    from churn_mlops.api.app import create_app
    from churn_mlops.settings import Settings

    artifact = ModelArtifact.load(model_dir)
    bodies = prediction_bodies(load_telco_csv(), 2_000)
    base = Settings(
        model_dir=model_dir,
        database_url=database_url,
        cache_enabled=cache,
        auth_enabled=False,
        environment="test",
        slow_request_ms=60_000,
    )
    apps = {
        name: create_app(base.model_copy(update={"prediction_log_enabled": enabled}), artifact)
        for name, enabled in (("log-off", False), ("log-on", True))
    }

    async def send(message: Any) -> None:
        pass

    async def call(app: Any, body: bytes) -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/predict",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json")],
        }
        await app(scope, receive, send)

    async def settled(app: Any) -> None:
        writer = app.state.prediction_log
        for _ in range(3000):  # 30 s at most
            if writer is None or not writer.stats().queue_depth:
                return
            await asyncio.sleep(0.01)
        raise RuntimeError("the prediction log did not drain in 30 s")

    async def drive() -> dict[str, list[float]]:
        per_request: dict[str, list[float]] = {name: [] for name in apps}
        async with AsyncExitStack() as stack:
            for app in apps.values():
                await stack.enter_async_context(app.router.lifespan_context(app))
            for app in apps.values():  # warm up (the cache too), and the statement prepared
                for body in bodies if cache else bodies[:500]:
                    await call(app, body)
                await settled(app)
            for block in range(blocks):
                order = list(apps) if block % 2 == 0 else list(reversed(apps))
                for name in order:
                    app = apps[name]
                    began = time.process_time()
                    for i in range(block_requests):
                        await call(app, bodies[i % len(bodies)])
                    await settled(app)
                    per_request[name].append((time.process_time() - began) / block_requests * 1e6)
        return per_request

    return asyncio.run(drive())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--database-url", required=True, help="PostgreSQL (or SQLite) URL")
    parser.add_argument("--model-dir", type=Path, default=Path("var/model"), help="Artifact")
    parser.add_argument("--rounds", type=int, default=5, help="Measurements per server")
    parser.add_argument("--duration", type=int, default=10, help="Seconds per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="Unmeasured seconds before each")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="Workers per server")
    parser.add_argument("--cache", action="store_true", help="Prediction cache on (hit path)")
    parser.add_argument("--out", type=Path, default=None, help="Folder for server logs")
    parser.add_argument("--in-process", action="store_true", help="Raw ASGI calls, CPU time")
    parser.add_argument("--blocks", type=int, default=20, help="--in-process: blocks per app")
    parser.add_argument("--block-requests", type=int, default=2_000)
    args = parser.parse_args(argv)

    figures = record_cost_ns()
    print(f"record(): {statistics.median(figures):.0f} ns per call (median of {figures})")

    schema.upgrade(args.database_url)
    if args.in_process:
        cpu = in_process_cpu(
            args.database_url,
            args.model_dir.resolve(),
            args.blocks,
            args.block_requests,
            cache=args.cache,
        )
        print("| app | median CPU us per request | min | max | blocks |")
        print("|---|---:|---:|---:|---:|")
        for name, values in cpu.items():
            print(
                f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} "
                f"| {max(values):.1f} | {len(values)} |"
            )
        added = statistics.median(cpu["log-on"]) - statistics.median(cpu["log-off"])
        print(f"the prediction log adds {added:.2f} us of CPU per request")
        return
    rows_before = asyncio.run(_count_rows(args.database_url))
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-prediction-log-"))
    out.mkdir(parents=True, exist_ok=True)
    common = {
        "CHURN_DATABASE_URL": args.database_url,
        "CHURN_AUTH_ENABLED": "false",
        "CHURN_CACHE_ENABLED": "true" if args.cache else "false",
    }
    specs = {
        name: churn_service(
            args.model_dir,
            workers=args.workers,
            name=name,
            env={**common, "CHURN_PREDICTION_LOG_ENABLED": enabled},
        )
        for name, enabled in (("log-off", "false"), ("log-on", "true"))
    }
    bodies = write_bodies(out / "bodies.txt", prediction_bodies(load_telco_csv(), 7043))
    wrk = Wrk(out)
    results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in specs}
    answered_by_log_on = 0
    with ExitStack() as stack:
        servers = {name: stack.enter_context(start_server(s, out)) for name, s in specs.items()}
        for round_number in range(args.rounds):
            order = list(servers) if round_number % 2 == 0 else list(reversed(servers))
            for name in order:
                server = servers[name]
                wait_until_idle(server)
                if args.warmup:
                    warm = wrk.run(
                        server.port,
                        "/predict",
                        bodies,
                        connections=args.connections,
                        duration_s=args.warmup,
                    )
                    answered_by_log_on += warm.requests if name == "log-on" else 0
                    wait_until_idle(server)
                cpu_before = _cpu_seconds(server)
                result = wrk.run(
                    server.port,
                    "/predict",
                    bodies,
                    connections=args.connections,
                    duration_s=args.duration,
                )
                # Service CPU per request, the database's own work left out (it runs elsewhere
                # in production): microseconds of the server's processes per answer.
                cpu_us = (_cpu_seconds(server) - cpu_before) / max(result.requests, 1) * 1e6
                answered_by_log_on += result.requests if name == "log-on" else 0
                if result.failed:
                    print(f"  {name}: {result.failed} failed requests")
                p50, p99 = result.latency_ms["p50"], result.latency_ms["p99"]
                results[name].append((result.rps, p50, p99, cpu_us))
                print(
                    f"round {round_number + 1} {name:8} {result.rps:9,.0f} req/s  "
                    f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  service CPU {cpu_us:5.1f} us/req"
                )
    print()
    print(f"{'server':8} {'median req/s':>13} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11}")
    for name, runs in results.items():
        rps, p50, p99, cpu_us = (statistics.median(run[i] for run in runs) for i in range(4))
        print(f"{name:8} {rps:13,.0f} {p50:8.2f} {p99:8.2f} {cpu_us:11.1f}")
    off = statistics.median(run[0] for run in results["log-off"])
    on = statistics.median(run[0] for run in results["log-on"])
    print(f"log on / log off: {on / off:.3f}")
    logged = asyncio.run(_count_rows(args.database_url)) - rows_before
    print(f"rows logged by log-on: {logged:,} (wrk counted {answered_by_log_on:,} answers)")


if __name__ == "__main__":
    main()
