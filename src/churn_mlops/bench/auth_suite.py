"""`churn-mlops bench --suite auth`: what authentication costs `POST /predict`.

Two copies of the service, identical but for `CHURN_AUTH_ENABLED`: with authentication (an API
key verified once, then served from the worker's cache; the per-principal token bucket checked
on every request, with limits no load reaches) and without. Both have their prediction cache and
prediction log off and the same database, so the difference is the authentication path alone.
In each round both are measured back to back at each connection level, the one going first
alternating; the report gives per-round figures, medians and the ratio of the medians.

It also times the guard of the raw `/predict` path in process (a cached key, the scope, the
bucket, the declared length): the per-request cost without HTTP around it.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from churn_mlops.bench.load import LoadResult, Wrk, prediction_bodies, write_bodies
from churn_mlops.bench.servers import (
    BenchCredentials,
    RunningServer,
    ServerSpec,
    churn_service,
    provision_credentials,
    start_server,
    wait_until_idle,
)
from churn_mlops.data import load_telco_csv

WORKERS = 2
WRK_THREADS = 2
DISTINCT_CUSTOMERS = 2_000
SERVERS = ("auth-on", "auth-off")
# Both servers: the model path only (no prediction cache), nothing written per prediction.
COMMON_ENV = {"CHURN_CACHE_ENABLED": "false", "CHURN_PREDICTION_LOG_ENABLED": "false"}


@dataclass(frozen=True)
class AuthRun:
    server: str
    connections: int
    round: int
    result: LoadResult


def auth_servers(model_dir: Path, credentials: BenchCredentials) -> dict[str, ServerSpec]:
    """The service with authentication and rate limiting on, and with both off."""
    on = churn_service(
        model_dir, workers=WORKERS, env=COMMON_ENV, name="auth-on", credentials=credentials
    )
    off = churn_service(
        model_dir,
        workers=WORKERS,
        env={**COMMON_ENV, "CHURN_AUTH_ENABLED": "false"},
        name="auth-off",
        credentials=credentials,
    )
    # auth-off is sent no key: nothing to verify, nothing to send.
    return {
        "auth-on": on,
        "auth-off": ServerSpec(off.name, off.argv, off.workers, off.ready_path, off.env),
    }


def plan(connections: Sequence[int], rounds: int) -> list[tuple[str, int, int]]:
    """(server, connections, round) in order: both servers back to back, alternating first."""
    runs: list[tuple[str, int, int]] = []
    turn = 0
    for round_ in range(rounds):
        for count in connections:
            order = SERVERS if turn % 2 == 0 else SERVERS[::-1]
            turn += 1
            runs.extend((server, count, round_) for server in order)
    return runs


def guard_cost_us(iterations: int = 200_000) -> dict[str, float]:
    """Microseconds per request the raw `/predict` path's guard costs with a cached key, and
    the same loop with authentication off (the guard then only checks the declared length)."""
    from churn_mlops.security.authenticator import Authenticator, MemoryKeySource
    from churn_mlops.security.guard import RequestGuard
    from churn_mlops.security.ratelimit import RateLimiter
    from churn_mlops.security.tokens import TokenService

    pepper = b"p" * 40
    tokens = TokenService("s" * 40, issuer="i", audience="a", ttl_seconds=60)
    authenticator = Authenticator(tokens, pepper, cache_ttl=3600)
    keys = MemoryKeySource(pepper)
    key = keys.add("bench", ["predict"])
    authenticator.keys = keys
    limiter = RateLimiter(1e12, 10**12)
    scope = {
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"x-api-key", key.encode()),
            (b"content-length", b"612"),
        ]
    }
    guards = {
        "auth-on": RequestGuard(authenticator, limiter, "predict", 10 * 1024 * 1024),
        "auth-off": RequestGuard(None, None, "predict", 10 * 1024 * 1024),
    }

    async def loop(guard: RequestGuard) -> float:
        await guard.admit(scope)  # the first verification, then the cache
        started = time.perf_counter()
        for _ in range(iterations):
            await guard.admit(scope)
        return (time.perf_counter() - started) / iterations * 1e6

    results: dict[str, list[float]] = {name: [] for name in guards}
    for _ in range(5):
        for name, guard in guards.items():
            results[name].append(asyncio.run(loop(guard)))
    return {name: statistics.median(values) for name, values in results.items()}


def app_cost_us(model_dir: Path, requests: int = 5_000, rounds: int = 6) -> dict[str, float]:
    """Microseconds per `POST /predict` through the whole app in process (raw ASGI calls: the
    fast path, the pipeline, the micro-batcher, the model; no HTTP), authentication on and off
    in alternating rounds; the medians."""
    import orjson

    from churn_mlops.api.app import create_app
    from churn_mlops.core.features import EXAMPLE_FEATURES
    from churn_mlops.security.authenticator import MemoryKeySource
    from churn_mlops.settings import Settings

    body = orjson.dumps({"customer_id": "8879-ZKJOF", "features": EXAMPLE_FEATURES})

    async def measure(auth: bool) -> float:
        settings = Settings(
            model_dir=model_dir,
            environment="test",
            database_url="",
            cache_enabled=False,
            prediction_log_enabled=False,
            auth_enabled=auth,
            rate_limit_per_second=1e12,
            rate_limit_burst=10**12,
        )
        app = create_app(settings)
        headers = [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if auth:
            keys = MemoryKeySource(settings.api_key_pepper.get_secret_value().encode())
            headers.append((b"x-api-key", keys.add("bench", ["predict"]).encode()))
            app.state.security.use_keys(keys)
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/predict",
            "headers": headers,
            "query_string": b"",
            "http_version": "1.1",
            "scheme": "http",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "root_path": "",
        }
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        async with app.router.lifespan_context(app):
            for _ in range(requests // 10):  # warm-up
                await app(dict(scope), receive, send)  # type: ignore[arg-type]
            started = time.perf_counter()
            for _ in range(requests):
                await app(dict(scope), receive, send)  # type: ignore[arg-type]
            elapsed = time.perf_counter() - started
        if set(statuses) != {200}:
            raise RuntimeError(f"in-process /predict answered {sorted(set(statuses))}")
        return elapsed / requests * 1e6

    results: dict[str, list[float]] = {"auth-on": [], "auth-off": []}
    for round_ in range(rounds):
        order = (True, False) if round_ % 2 == 0 else (False, True)
        for auth in order:
            results["auth-on" if auth else "auth-off"].append(asyncio.run(measure(auth)))
    return {name: statistics.median(values) for name, values in results.items()}


def _median(
    runs: Sequence[AuthRun], server: str, count: int, pick: Callable[[LoadResult], float]
) -> float:
    return statistics.median(
        pick(r.result) for r in runs if r.server == server and r.connections == count
    )


def paired_ratio(runs: Sequence[AuthRun], count: int) -> float:
    """The median over rounds of auth-on RPS / auth-off RPS, each pair measured back to back:
    steadier than the ratio of the medians when the machine's load drifts between rounds."""
    ratios = []
    for round_ in sorted({r.round for r in runs}):
        pair = {
            r.server: r.result.rps for r in runs if r.connections == count and r.round == round_
        }
        if len(pair) == 2 and pair["auth-off"] > 0:
            ratios.append(pair["auth-on"] / pair["auth-off"])
    return statistics.median(ratios) if ratios else float("nan")


def render(
    runs: Sequence[AuthRun],
    connections: Sequence[int],
    guard_us: dict[str, float],
    meta: dict[str, Any],
    app_us: dict[str, float] | None = None,
) -> str:
    lines = [
        "## Authentication cost",
        "",
        f"`{meta['command']}` ({meta['started']}, {meta['rounds']} rounds of "
        f"{meta['duration_s']} s after {meta['warmup_s']} s of warm-up, {WORKERS} workers each, "
        f"wrk {WRK_THREADS} threads, model {meta['model_version']}):",
        "",
        "| connections | round | auth on RPS | auth off RPS | on / off | on p50 ms | off p50 ms "
        "| on p99 ms | off p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for count in connections:
        for round_ in sorted({r.round for r in runs}):
            pair = {
                r.server: r.result for r in runs if r.connections == count and r.round == round_
            }
            if len(pair) < 2:
                continue
            on, off = pair["auth-on"], pair["auth-off"]
            lines.append(
                f"| {count} | {round_ + 1} | {on.rps:,.0f} | {off.rps:,.0f} | "
                f"{on.rps / off.rps:.3f} | "
                f"{on.latency_ms['p50']:.2f} | {off.latency_ms['p50']:.2f} | "
                f"{on.latency_ms['p99']:.2f} | {off.latency_ms['p99']:.2f} |"
            )
    lines += [
        "",
        "| connections | median RPS auth on | median RPS auth off | on / off "
        "| median of the rounds' on / off |",
        "|---:|---:|---:|---:|---:|",
    ]
    for count in connections:
        rps_on = _median(runs, "auth-on", count, lambda r: r.rps)
        rps_off = _median(runs, "auth-off", count, lambda r: r.rps)
        lines.append(
            f"| {count} | {rps_on:,.0f} | {rps_off:,.0f} | {rps_on / rps_off:.3f} "
            f"| {paired_ratio(runs, count):.3f} |"
        )
    failed = {r.server: r.result.failed for r in runs if r.result.failed}
    lines += [
        "",
        f"Non-2xx or failed requests: {failed or 'none'}.",
        "",
        "The guard of the raw `/predict` path in process (a cached API key, the scope, the "
        "bucket, the declared length), median of 5 x 200,000 calls: "
        f"{guard_us['auth-on']:.2f} µs with authentication, {guard_us['auth-off']:.2f} µs without.",
        "",
    ]
    if app_us:
        lines += [
            "The whole app in process (raw ASGI `POST /predict`, no HTTP, cache off), median of "
            f"6 alternating rounds of 5,000 requests: {app_us['auth-on']:.1f} µs a request with "
            f"authentication, {app_us['auth-off']:.1f} µs without "
            f"(+{app_us['auth-on'] - app_us['auth-off']:.1f} µs).",
            "",
        ]
    return "\n".join(lines)


def run_auth_suite(
    model_dir: Path,
    out_dir: Path,
    *,
    connections: Sequence[int],
    duration_s: int,
    warmup_s: int,
    rounds: int,
    command: str,
    model_version: str,
    log: Callable[[str], None],
) -> str:
    """Run the suite; the markdown report (also written to `out_dir`)."""
    started = datetime.now(UTC)
    runs: list[AuthRun] = []
    with tempfile.TemporaryDirectory(prefix="churn-bench-auth-") as work_name:
        work = Path(work_name)
        wrk = Wrk(work)
        bodies = write_bodies(
            work / "bodies.jsonl", prediction_bodies(load_telco_csv(), DISTINCT_CUSTOMERS)
        )
        log("creating the bench's API key (churn-mlops keys create)")
        specs = auth_servers(model_dir, provision_credentials(work))
        servers: dict[str, RunningServer] = {}
        with ExitStack() as stack:
            for name in SERVERS:
                servers[name] = stack.enter_context(start_server(specs[name], out_dir / "logs"))
                log(f"started {name} on port {servers[name].port}")
            for server_name, count, round_ in plan(connections, rounds):
                server = servers[server_name]
                api_key = server.spec.api_key
                if warmup_s:
                    wrk.run(
                        server.port,
                        "/predict",
                        bodies,
                        connections=count,
                        threads=WRK_THREADS,
                        duration_s=warmup_s,
                        timeout_s=5,
                        api_key=api_key,
                    )
                    wait_until_idle(server)
                result = wrk.run(
                    server.port,
                    "/predict",
                    bodies,
                    connections=count,
                    threads=WRK_THREADS,
                    duration_s=duration_s,
                    timeout_s=5,
                    api_key=api_key,
                )
                wait_until_idle(server)
                runs.append(AuthRun(server_name, count, round_, result))
                latency = result.latency_ms
                log(
                    f"round {round_ + 1} {server_name:<8} c={count:<4} {result.rps:>9,.1f} req/s"
                    f"  p50 {latency['p50']:.2f} ms  p99 {latency['p99']:.2f} ms"
                    f"  failed {result.failed:,}"
                )
    log("timing the guard and the whole app in process")
    guard_us = guard_cost_us()
    app_us = app_cost_us(model_dir)
    meta = {
        "command": command,
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "rounds": rounds,
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "model_version": model_version,
    }
    report = render(runs, connections, guard_us, meta, app_us)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "auth-report.md").write_text(report)
    (out_dir / "auth-results.json").write_text(
        json.dumps(
            {
                **meta,
                "guard_us": guard_us,
                "app_us": app_us,
                "runs": [
                    {
                        "server": r.server,
                        "connections": r.connections,
                        "round": r.round,
                        **r.result.to_dict(),
                    }
                    for r in runs
                ],
            },
            indent=2,
        )
    )
    return report


def run_auth_suite_from_cli(
    *,
    model_dir: Path | None,
    out: Path | None,
    duration: str,
    warmup: str,
    rounds: int,
    connections: str,
) -> None:
    """`churn-mlops bench --suite auth`, options parsed, the model trained if missing."""
    import typer
    from rich.console import Console

    from churn_mlops.bench.load import LoadError, parse_duration
    from churn_mlops.bench.servers import ServerError
    from churn_mlops.data import SHIPPED_DATASET
    from churn_mlops.model.provisioning import ensure_model
    from churn_mlops.settings import Settings

    console = Console(stderr=True)
    try:
        duration_s, warmup_s = parse_duration(duration), parse_duration(warmup)
        levels = [int(item) for item in connections.split(",") if item.strip()]
        if not levels or min(levels) < 1:
            raise ValueError("give positive connection counts like 32 or 1,32")
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if duration_s < 1:
        raise typer.BadParameter("runs last at least 1s", param_hint="--duration")
    settings = Settings()
    served = (model_dir or settings.model_dir).resolve()
    artifact = ensure_model(served, settings.data_path or SHIPPED_DATASET, "bench")
    started = datetime.now(UTC)
    command = (
        f"churn-mlops bench --suite auth --auth-connections {','.join(map(str, levels))}"
        f" --duration {duration_s}s --warmup {warmup_s}s --rounds {rounds}"
    )
    try:
        report = run_auth_suite(
            served,
            out or Path("bench-results") / started.strftime("auth-%Y%m%dT%H%M%SZ"),
            connections=levels,
            duration_s=duration_s,
            warmup_s=warmup_s,
            rounds=rounds,
            command=command,
            model_version=artifact.version,
            log=lambda text: console.print(text, soft_wrap=True),
        )
    except (ServerError, LoadError) as error:
        console.print(f"[red]bench stopped:[/] {error}")
        raise typer.Exit(1) from None
    sys.stdout.write(report)
