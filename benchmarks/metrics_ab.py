"""What metrics cost `POST /predict`: the service with `CHURN_METRICS_ENABLED` on and off.

    flock /tmp/churn-bench.lock .venv/bin/python -m benchmarks metrics-ab --rounds 5
    flock /tmp/churn-bench.lock .venv/bin/python -m benchmarks metrics-ab --in-process

Over HTTP (default): two `churn-mlops serve` servers (2 workers each) under the same wrk load,
measured in turn by `benchmarks.http_ab`, with the server's own CPU per answered request.

In process (`--in-process`): the two apps built by `create_app`, their lifespans running, driven
with raw ASGI `POST /predict` calls by `benchmarks.inprocess`; CPU time per request in blocks
that take turns. No sockets and no load generator share the cores, so it resolves the
microseconds that wrk's run-to-run noise on a shared machine hides.

Both: prediction cache off (every request reaches the model, as in the service suite), no
database and no authentication, so the only difference is the metrics.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.constants import DISTINCT_CUSTOMERS
from benchmarks.http_ab import ab_table, run_servers_ab
from benchmarks.inprocess import cpu_table, cycle, interleaved_blocks, predict_variant, serving_all
from benchmarks.load import prediction_bodies
from benchmarks.servers import churn_service
from churn_mlops.api.app import create_app
from churn_mlops.data import load_telco_csv
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings

COMMON_ENV = {
    "CHURN_CACHE_ENABLED": "false",
    "CHURN_DATABASE_URL": "",
    "CHURN_AUTH_ENABLED": "false",
    "CHURN_ENVIRONMENT": "test",
}
ON, OFF = "metrics on", "metrics off"


@dataclass(frozen=True)
class MetricsABOptions:
    model_dir: Path
    rounds: int
    duration_s: int
    warmup_s: int
    connections: int
    same: bool
    """A/A: both servers with metrics off, the noise floor."""
    out: Path | None


def in_process_cpu(
    model_dir: Path, artifact: ModelArtifact, blocks: int, block_requests: int
) -> dict[str, list[float]]:
    """CPU microseconds per request of the two apps, one figure per block."""
    bodies = prediction_bodies(load_telco_csv(), DISTINCT_CUSTOMERS)
    base = Settings(
        model_dir=model_dir,
        cache_enabled=False,
        database_url="",
        auth_enabled=False,
        environment="test",
        slow_request_ms=60_000,
    )
    apps = {
        name: create_app(base.model_copy(update={"metrics_enabled": on}), artifact)
        for name, on in ((ON, True), (OFF, False))
    }

    async def drive() -> dict[str, list[float]]:
        async with serving_all(apps) as running:
            variants = [predict_variant(name, app) for name, app in running.items()]
            timed = cycle(bodies, block_requests)
            return await interleaved_blocks(variants, timed, blocks, warmup=bodies[:500])

    return asyncio.run(drive())


def over_http(options: MetricsABOptions) -> list[str]:
    """Both servers under wrk in turn; the table of medians and their ratio."""
    on_env = {**COMMON_ENV, "CHURN_METRICS_ENABLED": "false" if options.same else "true"}
    specs = {
        ON: churn_service(options.model_dir, env=on_env, name="metrics-on"),
        OFF: churn_service(
            options.model_dir,
            env={**COMMON_ENV, "CHURN_METRICS_ENABLED": "false"},
            name="metrics-off",
        ),
    }
    out = options.out or Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    runs = run_servers_ab(
        specs,
        out / "logs",
        prediction_bodies(load_telco_csv(), DISTINCT_CUSTOMERS),
        connections=[options.connections],
        rounds=options.rounds,
        duration_s=options.duration_s,
        warmup_s=options.warmup_s,
    )
    return ab_table(runs, ON, OFF)


def run_metrics_ab(
    options: MetricsABOptions,
    artifact: ModelArtifact,
    *,
    in_process: bool,
    blocks: int,
    block_requests: int,
) -> list[str]:
    """The in-process or the HTTP A/B; the report's lines."""
    if in_process:
        cpu = in_process_cpu(options.model_dir, artifact, blocks, block_requests)
        return cpu_table(cpu, ON, OFF)
    return over_http(options)
