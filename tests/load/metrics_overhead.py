"""What metrics cost `POST /predict`: the service with `CHURN_METRICS_ENABLED` on and off.

    flock /tmp/churn-bench.lock .venv/bin/python -m tests.load.metrics_overhead --rounds 5
    flock /tmp/churn-bench.lock .venv/bin/python -m tests.load.metrics_overhead --in-process

HTTP (default): two `churn-mlops serve` servers (2 workers each) under the same wrk load, A/B
interleaved in one run with the bench harness's servers and wrk driver; each round measures
both, the order alternating between rounds.

In-process (`--in-process`): the two apps built by `create_app`, their lifespans running, driven
with raw ASGI `POST /predict` calls one after the other on one event loop; CPU time per request
(`time.process_time`) in alternating blocks. No sockets and no load generator share the cores,
so it resolves the microseconds that wrk's run-to-run noise on a shared machine hides.

Both: prediction cache off (every request reaches the model, as in `churn-mlops bench`), no
database and no authentication, so the only difference is the metrics.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from churn_mlops.bench.load import Wrk, prediction_bodies, write_bodies
from churn_mlops.bench.servers import (
    churn_service,
    group_members,
    start_server,
    wait_until_idle,
)
from churn_mlops.data import SHIPPED_DATASET, load_telco_csv
from churn_mlops.model.provisioning import ensure_model
from churn_mlops.settings import Settings

COMMON_ENV = {
    "CHURN_CACHE_ENABLED": "false",
    "CHURN_DATABASE_URL": "",
    "CHURN_AUTH_ENABLED": "false",
    "CHURN_ENVIRONMENT": "test",
}


def in_process(blocks: int, block_requests: int) -> None:
    import asyncio
    import time
    from contextlib import AsyncExitStack

    from churn_mlops.api.app import create_app

    model_dir = Settings().model_dir.resolve()
    artifact = ensure_model(model_dir, SHIPPED_DATASET, "bench")
    bodies = prediction_bodies(load_telco_csv(), 2_000)
    base = Settings(
        model_dir=model_dir,
        cache_enabled=False,
        database_url="",
        auth_enabled=False,
        environment="test",
        slow_request_ms=60_000,
    )

    async def drive() -> dict[str, list[float]]:
        apps = {
            "metrics on": create_app(base.model_copy(update={"metrics_enabled": True}), artifact),
            "metrics off": create_app(base.model_copy(update={"metrics_enabled": False}), artifact),
        }
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

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
            sent.clear()

        per_request: dict[str, list[float]] = {name: [] for name in apps}
        async with AsyncExitStack() as stack:
            for app in apps.values():
                await stack.enter_async_context(app.router.lifespan_context(app))
            for app in apps.values():  # warm
                for body in bodies[:500]:
                    await call(app, body)
            for block in range(blocks):
                order = list(apps) if block % 2 == 0 else list(reversed(apps))
                for name in order:
                    app = apps[name]
                    began = time.process_time()
                    for i in range(block_requests):
                        await call(app, bodies[i % len(bodies)])
                    per_request[name].append((time.process_time() - began) / block_requests)
        return per_request

    per_request = asyncio.run(drive())
    print("| app | median CPU us per request | min | max | blocks |")
    print("|---|---:|---:|---:|---:|")
    for name, values in per_request.items():
        us = [v * 1e6 for v in values]
        print(
            f"| {name} | {statistics.median(us):.1f} | {min(us):.1f} | {max(us):.1f} | {len(us)} |"
        )
    on = statistics.median(per_request["metrics on"])
    off = statistics.median(per_request["metrics off"])
    print(f"\nmetrics add {(on - off) * 1e6:.2f} us per request ({(on / off - 1) * 100:+.1f} %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("bench-results/metrics-overhead"))
    parser.add_argument("--in-process", action="store_true", help="raw ASGI calls, CPU time")
    parser.add_argument("--blocks", type=int, default=20, help="--in-process: blocks per app")
    parser.add_argument("--block-requests", type=int, default=2_000)
    parser.add_argument(
        "--same", action="store_true", help="A/A: both servers with metrics off (noise floor)"
    )
    args = parser.parse_args()
    if args.in_process:
        in_process(args.blocks, args.block_requests)
        return

    model_dir = Settings().model_dir.resolve()
    ensure_model(model_dir, SHIPPED_DATASET, "bench")
    variants = {
        "metrics on": churn_service(
            model_dir,
            env={**COMMON_ENV, "CHURN_METRICS_ENABLED": "false" if args.same else "true"},
            name="metrics-on",
        ),
        "metrics off": churn_service(
            model_dir, env={**COMMON_ENV, "CHURN_METRICS_ENABLED": "false"}, name="metrics-off"
        ),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as work_name, ExitStack() as stack:
        work = Path(work_name)
        wrk = Wrk(work)
        bodies = write_bodies(work / "bodies.jsonl", prediction_bodies(load_telco_csv(), 2_000))
        servers = {
            name: stack.enter_context(start_server(spec, args.out / "logs"))
            for name, spec in variants.items()
        }
        for server in servers.values():  # JIT, caches and connections warm
            wrk.run(server.port, "/predict", bodies, connections=args.connections, duration_s=3)
            wait_until_idle(server)
        for round_number in range(args.rounds):
            order = list(servers) if round_number % 2 == 0 else list(reversed(servers))
            for name in order:
                before = _cpu_seconds(servers[name].process.pid)
                result = wrk.run(
                    servers[name].port,
                    "/predict",
                    bodies,
                    connections=args.connections,
                    duration_s=args.duration,
                )
                # The server's own CPU per answered request: far steadier than RPS on a shared
                # machine. Read before it drains what wrk left queued, which is not counted.
                used = _cpu_seconds(servers[name].process.pid) - before
                wait_until_idle(servers[name])
                failed = sum(result.errors.values())
                cpu_us = used / max(result.requests, 1) * 1e6
                results[name].append((result.rps, result.latency_ms["p99"]))
                cpu[name].append(cpu_us)
                print(
                    f"round {round_number + 1} {name:<12} {result.rps:>9,.0f} req/s  "
                    f"p99 {result.latency_ms['p99']:.2f} ms  errors {failed}  "
                    f"server CPU {cpu_us:.1f} us/request",
                    flush=True,
                )
    on = statistics.median(rps for rps, _ in results["metrics on"])
    off = statistics.median(rps for rps, _ in results["metrics off"])
    print()
    print("| server | median RPS | median p99 ms | median server CPU us/request | runs |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in results.items():
        p99 = statistics.median(p for _, p in runs)
        rps = statistics.median(r for r, _ in runs)
        print(
            f"| {name} | {rps:,.0f} | {p99:.2f} | {statistics.median(cpu[name]):.1f} | "
            f"{len(runs)} |"
        )
    cpu_on, cpu_off = statistics.median(cpu["metrics on"]), statistics.median(cpu["metrics off"])
    print(f"\nRPS metrics on / off: {on / off:.3f} ({(on / off - 1) * 100:+.1f} %)")
    print(
        f"server CPU per request, metrics on / off: {cpu_on / cpu_off:.3f} "
        f"({cpu_on - cpu_off:+.1f} us, {(cpu_on / cpu_off - 1) * 100:+.1f} %)"
    )


def _cpu_seconds(process_group: int) -> float:
    members = group_members(process_group) or []
    return sum(ticks for _, _, ticks in members) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
