"""What the prediction log costs the request path, measured three ways.

1. `record()` alone: nanoseconds per call on this machine (the flusher takes each batch away
   between timed stretches, writing to a sink that does nothing).
2. In process (`--in-process`): two apps, log off and on, driven with raw ASGI `POST /predict`
   by `benchmarks.inprocess`; a block of the log-on app is timed until its writer has written
   every row (the database's own work, in another process, is left out).
3. Over HTTP (default): the real service (`churn-mlops serve`, PostgreSQL) with the log off and
   on, up side by side and measured in turn by `benchmarks.http_ab`.

    python -m benchmarks prediction-log-ab --database-url postgresql://...  [--rounds 5]

`--features` compares the log without and with `CHURN_LOG_FEATURES` instead (both log on):
what recording each scored row's encoded features (76 bytes) adds, in `record()` and in 2. or 3.

Run it under `flock /tmp/churn-bench.lock` on a shared machine.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from benchmarks.asgi_client import InProcessApp
from benchmarks.constants import DISTINCT_CUSTOMERS
from benchmarks.http_ab import ab_table, run_servers_ab
from benchmarks.inprocess import (
    Variant,
    cpu_table,
    cycle,
    interleaved_blocks,
    predict_variant,
    service_runtime,
    serving_all,
)
from benchmarks.load import prediction_bodies
from benchmarks.production import prepare_database
from benchmarks.servers import churn_service
from churn_mlops.api.app import create_app
from churn_mlops.data import load_telco_csv
from churn_mlops.db import schema
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Prediction
from churn_mlops.db.prediction_log import PredictionLogWriter
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings

CONFIGURATIONS = {"log-off": False, "log-on": True}
"""Without `--features`: the prediction log off and on."""
FEATURE_CONFIGURATIONS = {"features-off": False, "features-on": True}
"""With `--features`: the log on in both, `log_features` off and on."""
DRAIN_TIMEOUT_S = 30


@dataclass(frozen=True)
class PredictionLogABOptions:
    database_url: str
    model_dir: Path
    rounds: int
    duration_s: int
    warmup_s: int
    connections: int
    workers: int
    cache: bool
    """The prediction cache on: every request after the warm-up is a hit, the cheapest request,
    where the log weighs most."""
    out: Path | None
    features: bool = False
    """Compare the log without and with features (`FEATURE_CONFIGURATIONS`), not off and on."""

    def configurations(self) -> dict[str, dict[str, bool]]:
        """Each configuration's settings, by name; the second is the one measured against the
        first."""
        if self.features:
            return {
                name: {"prediction_log_enabled": True, "log_features": on}
                for name, on in FEATURE_CONFIGURATIONS.items()
            }
        return {name: {"prediction_log_enabled": on} for name, on in CONFIGURATIONS.items()}


class _NoSink:
    async def write(self, rows: Sequence[object]) -> int:
        return len(rows)

    async def close(self) -> None:
        return None


async def _record_cost_ns(
    calls: int, batches: int, repeats: int, features: bytes | None
) -> list[int]:
    with tempfile.TemporaryDirectory() as directory:
        writer = PredictionLogWriter(_NoSink(), Path(directory) / "spill.jsonl", batch_rows=calls)
        await writer.start()
        record, figures = writer.record, []
        try:
            for _ in range(repeats):
                elapsed = 0
                for _ in range(batches):
                    start = time.perf_counter_ns()
                    if features is None:
                        for _ in range(calls):
                            record("7590-VHVEG", 0.4242, True, False, 0.8, "v479bc1ffc06d")
                    else:
                        for _ in range(calls):
                            record(
                                "7590-VHVEG", 0.4242, True, False, 0.8, "v479bc1ffc06d",
                                features=features,
                            )  # fmt: skip
                    elapsed += time.perf_counter_ns() - start
                    await _drained(writer)  # the flusher's turn, not timed
                figures.append(round(elapsed / (calls * batches)))
        finally:
            await writer.close()
    return figures


def record_cost_ns(
    calls: int = 500, batches: int = 2000, repeats: int = 5, features: bytes | None = None
) -> list[int]:
    """Nanoseconds per `record()` call, one figure per repeat: `batches` times `calls` calls,
    each batch written away before the next (as the flusher does with its batches); with
    `features`, each call passes them (what the pipeline does with `CHURN_LOG_FEATURES`)."""
    return asyncio.run(_record_cost_ns(calls, batches, repeats, features))


async def _drained(writer: PredictionLogWriter | None) -> None:
    """Until `writer` holds no row that is not written yet."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while writer is not None and writer.stats().queue_depth:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the prediction log did not drain in {DRAIN_TIMEOUT_S} s")
        await asyncio.sleep(0.001)


def _variant(name: str, app: InProcessApp) -> Variant[bytes]:
    """`POST /predict`, each block timed until the app's prediction log has written its rows."""

    async def settle() -> None:
        await _drained(service_runtime(app.app).prediction_log)

    return predict_variant(name, app, settle)


def in_process_cpu(
    options: PredictionLogABOptions, blocks: int, block_requests: int
) -> dict[str, list[float]]:
    """CPU microseconds per request of the two apps, one figure per block; no authentication."""
    artifact = ModelArtifact.load(options.model_dir)
    bodies = prediction_bodies(load_telco_csv(), DISTINCT_CUSTOMERS)
    base = Settings(
        model_dir=options.model_dir,
        database_url=options.database_url,
        cache_enabled=options.cache,
        auth_enabled=False,
        environment="test",
        slow_request_ms=60_000,
    )
    apps = {
        name: create_app(base.model_copy(update=update), artifact)
        for name, update in options.configurations().items()
    }

    async def drive() -> dict[str, list[float]]:
        async with serving_all(apps) as running:
            variants = [_variant(name, app) for name, app in running.items()]
            # Warm (the cache too, when on), and the insert statement prepared.
            warmup = bodies if options.cache else bodies[:500]
            timed = cycle(bodies, block_requests)
            return await interleaved_blocks(variants, timed, blocks, warmup=warmup)

    return asyncio.run(drive())


async def _count_rows(url: str) -> int:
    database = Database.from_url(url)
    try:
        async with database.engine.connect() as connection:
            count = (await connection.execute(select(func.count(Prediction.id)))).scalar_one()
            return int(count)
    finally:
        await database.dispose()


def over_http(options: PredictionLogABOptions) -> list[str]:
    """Both servers under wrk in turn; the table of medians, and the rows the log wrote."""
    rows_before = asyncio.run(_count_rows(options.database_url))
    out = options.out or Path(tempfile.mkdtemp(prefix="bench-prediction-log-"))
    out.mkdir(parents=True, exist_ok=True)
    spill = out / "prediction-log" / "predictions.jsonl"
    common = {
        "CHURN_DATABASE_URL": options.database_url,
        "CHURN_AUTH_ENABLED": "false",
        "CHURN_CACHE_ENABLED": "true" if options.cache else "false",
        # What the database does not take in time is counted too, never replayed elsewhere.
        "CHURN_PREDICTION_LOG_SPILL_PATH": str(spill),
    }
    specs = {
        name: churn_service(
            options.model_dir,
            workers=options.workers,
            name=name,
            env={
                **common,
                **{f"CHURN_{key.upper()}": str(on).lower() for key, on in update.items()},
            },
        )
        for name, update in options.configurations().items()
    }
    baseline, measured = options.configurations()
    runs = run_servers_ab(
        specs,
        out,
        prediction_bodies(load_telco_csv(), 7043),
        connections=[options.connections],
        rounds=options.rounds,
        duration_s=options.duration_s,
        warmup_s=options.warmup_s,
    )
    logged = asyncio.run(_count_rows(options.database_url)) - rows_before
    spilled = sum(path.read_bytes().count(b"\n") for path in spill.parent.glob("*"))
    answered = sum(run.answered for run in runs if run.server != "log-off")
    return [
        *ab_table(runs, measured, baseline),
        f"rows logged: {logged:,} in the database, {spilled:,} in the spill file "
        f"(wrk counted {answered:,} answers of the servers with the log on)",
    ]


def run_prediction_log_ab(
    options: PredictionLogABOptions,
    *,
    in_process: bool,
    blocks: int,
    block_requests: int,
    record_batches: int = 2000,
) -> list[str]:
    """`record()` alone (`record_batches` batches of 500 calls, five times), then the in-process
    or the HTTP A/B; the report's lines."""
    figures = record_cost_ns(batches=record_batches)
    lines = [f"record(): {statistics.median(figures):.0f} ns per call (median of {figures})"]
    if options.features:
        with_features = record_cost_ns(batches=record_batches, features=bytes(76))
        lines.append(
            f"record(features=76 bytes): {statistics.median(with_features):.0f} ns per call "
            f"(median of {with_features})"
        )
    if make_url(options.database_url).get_backend_name() == "postgresql":
        prepare_database(options.database_url)  # created if missing, as the production server's
    else:
        schema.upgrade(options.database_url)
    if in_process:
        cpu = in_process_cpu(options, blocks, block_requests)
        baseline, measured = options.configurations()
        return [*lines, *cpu_table(cpu, measured, baseline)]
    return [*lines, *over_http(options)]
