"""PostgreSQL outages under the prediction log: through a TCP proxy between the service and
PostgreSQL (blackhole, reset, refuse) and with pg_terminate_backend on the service's
connections, every prediction is answered while the database is away, and once it is back every
row arrives exactly once (compared by customer id and by row id)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from churn_mlops.api.app import ChurnAPI, create_app
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.db import schema
from churn_mlops.db.prediction_log import PredictionLogWriter
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings
from tests.fixtures.postgres import POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER
from tests.fixtures.tcp_proxy import TcpProxy
from tests.integration.db.prediction_log.conftest import logged_rows, running

# The bound covers each test itself; the first one's fixtures may train the session's model.
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

# A prediction never waits for the database; on a busy machine one still takes a while.
ANSWER_BOUND = 1.0


@pytest.fixture(scope="module")
def database(postgres_database: str) -> str:
    """The module's PostgreSQL database, migrated; its direct URL (no proxy)."""
    schema.upgrade(postgres_database)
    return postgres_database


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of the machine's PostgreSQL, passing traffic until told otherwise."""
    tcp_proxy = TcpProxy(POSTGRES_HOST, POSTGRES_PORT)
    await tcp_proxy.start()
    yield tcp_proxy
    await tcp_proxy.close()


def _through(proxy: TcpProxy, database: str) -> str:
    name = database.rsplit("/", 1)[1]
    return f"postgresql://{POSTGRES_USER}@{proxy.host}:{proxy.port}/{name}"


@pytest.fixture
def spill_path(tmp_path: Path) -> Path:
    return tmp_path / "spill" / "predictions.jsonl"


@pytest.fixture
def prefix() -> str:
    return f"f{uuid.uuid4().hex[:8]}-"


def _settings(
    artifact_dir: Path, database_url: str, spill_path: Path, **overrides: Any
) -> Settings:
    options: dict[str, Any] = {
        "model_dir": artifact_dir,
        "environment": "test",
        "auth_enabled": False,
        "database_url": database_url,
        "db_statement_timeout_ms": 2000,
        "cache_enabled": False,
        # Hundreds of concurrent requests on a busy machine: queue them rather than shed them.
        "batch_max_queue": 1024,
        "batch_max_queue_delay_ms": 10_000.0,
        "prediction_log_flush_ms": 20.0,
        "prediction_log_batch_rows": 50,
        "prediction_log_write_timeout_seconds": 0.3,
        "prediction_log_retry_max_seconds": 0.2,
        "prediction_log_shutdown_timeout_seconds": 2.0,
        "prediction_log_spill_path": spill_path,
    }
    options.update(overrides)
    return Settings(**options)


async def _predict(client: httpx.AsyncClient, customer_ids: list[str]) -> list[float]:
    """POST /predict for each id concurrently; each answer's time in seconds (all must be 200)."""

    async def one(customer_id: str) -> float:
        start = time.perf_counter()
        response = await client.post(
            "/predict", json={"customer_id": customer_id, "features": EXAMPLE_FEATURES}
        )
        assert response.status_code == 200, response.text
        assert response.json()["customer_id"] == customer_id
        return time.perf_counter() - start

    return list(await asyncio.gather(*(one(customer_id) for customer_id in customer_ids)))


async def _wait_for(condition: Any, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def _writer(app: ChurnAPI) -> PredictionLogWriter:
    writer: PredictionLogWriter = app.runtime.prediction_log
    return writer


async def _assert_exactly_once(database: str, prefix: str, expected: list[str]) -> None:
    rows = await logged_rows(database, prefix)
    assert sorted(external for _, _, external in rows) == sorted(expected)
    assert len({row_id for row_id, _, _ in rows}) == len(expected)


async def _apply(proxy: TcpProxy, mode: str) -> None:
    if mode == "blackhole":
        await proxy.blackhole()
    elif mode == "reset":
        await proxy.reset()
    else:
        await proxy.refuse()


@pytest.mark.parametrize("mode", ["blackhole", "reset", "refuse"])
async def test_predictions_are_answered_during_an_outage_and_logged_once_after_it(
    database: str,
    proxy: TcpProxy,
    artifact_dir: Path,
    artifact: ModelArtifact,
    spill_path: Path,
    prefix: str,
    mode: str,
) -> None:
    settings = _settings(artifact_dir, _through(proxy, database), spill_path)
    before, during, after = (
        [f"{prefix}{phase}-{n}" for n in range(count)]
        for phase, count in (("before", 100), ("during", 300), ("after", 100))
    )
    app = create_app(settings, artifact)
    async with running(app) as client:
        writer = _writer(app)
        await _predict(client, before)
        await _wait_for(lambda: writer.stats().rows_flushed == 100)

        await _apply(proxy, mode)
        answer_times = await _predict(client, during)
        await _wait_for(lambda: writer.stats().flush_failures >= 2)
        assert writer.stats().outage is True
        assert writer.stats().queue_depth == 300

        await proxy.pass_through()
        await _predict(client, after)
        await _wait_for(lambda: writer.stats().queue_depth == 0 and not writer.stats().outage)
        stats = writer.stats()
    assert max(answer_times) < ANSWER_BOUND
    assert (stats.rows_recorded, stats.rows_flushed, stats.rows_spilled) == (500, 500, 0)
    assert stats.retries >= 2
    await _assert_exactly_once(database, prefix, before + during + after)


async def test_terminated_connections_lose_and_duplicate_nothing(
    database: str,
    artifact_dir: Path,
    artifact: ModelArtifact,
    spill_path: Path,
    prefix: str,
) -> None:
    settings = _settings(artifact_dir, database, spill_path, prediction_log_batch_rows=20)
    name = database.rsplit("/", 1)[1]
    admin = await asyncpg.connect(
        host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER, database=name
    )
    expected: list[str] = []
    terminated = 0
    app = create_app(settings, artifact)
    try:
        async with running(app) as client:
            writer = _writer(app)
            for wave in range(10):
                ids = [f"{prefix}{wave}-{n}" for n in range(60)]
                answered = asyncio.ensure_future(_predict(client, ids))
                await asyncio.sleep(0.01)
                terminated += await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    name,
                )
                await answered
                expected.extend(ids)
            await _wait_for(lambda: writer.stats().queue_depth == 0)
            stats = writer.stats()
    finally:
        await admin.close()
    assert terminated > 0
    assert stats.rows_recorded == len(expected)
    assert stats.rows_flushed == len(expected)
    await _assert_exactly_once(database, prefix, expected)


async def test_rows_past_the_bound_spill_to_file_and_are_replayed_on_recovery(
    database: str,
    proxy: TcpProxy,
    artifact_dir: Path,
    artifact: ModelArtifact,
    spill_path: Path,
    prefix: str,
) -> None:
    settings = _settings(
        artifact_dir,
        _through(proxy, database),
        spill_path,
        prediction_log_max_buffer=20,
        prediction_log_batch_rows=10,
    )
    ids = [f"{prefix}{n}" for n in range(300)]
    app = create_app(settings, artifact)
    async with running(app) as client:
        writer = _writer(app)
        await proxy.refuse()
        for start in range(0, 300, 50):
            await _predict(client, ids[start : start + 50])
        # In memory: the buffer's bound, and the batch being retried (at most as many rows).
        await _wait_for(lambda: writer.stats().queue_depth <= 20 + 20)
        spilled = writer.stats().rows_spilled
        assert spilled >= 300 - 40
        assert await asyncio.to_thread(spill_path.exists)

        await proxy.pass_through()
        await _wait_for(lambda: writer.stats().queue_depth == 0 and not writer.stats().outage)
        await _wait_for(lambda: writer.stats().rows_replayed == spilled)
        stats = writer.stats()
    assert stats.rows_flushed + stats.rows_replayed == 300
    assert await asyncio.to_thread(lambda: list(spill_path.parent.iterdir())) == []
    await _assert_exactly_once(database, prefix, ids)


async def test_shutdown_flushes_every_buffered_row(
    database: str, artifact_dir: Path, artifact: ModelArtifact, spill_path: Path, prefix: str
) -> None:
    # Nothing is written before the shutdown: every row goes out in close().
    settings = _settings(artifact_dir, database, spill_path, prediction_log_flush_ms=60_000)
    ids = [f"{prefix}{n}" for n in range(120)]
    app = create_app(settings, artifact)
    async with running(app) as client:
        await _predict(client, ids)
        writer = _writer(app)
        assert writer.stats().rows_flushed == 0
    assert writer.stats().rows_flushed == 120
    await _assert_exactly_once(database, prefix, ids)


async def test_shutdown_during_an_outage_spills_and_the_next_start_replays(
    database: str,
    proxy: TcpProxy,
    artifact_dir: Path,
    artifact: ModelArtifact,
    spill_path: Path,
    prefix: str,
) -> None:
    settings = _settings(
        artifact_dir,
        _through(proxy, database),
        spill_path,
        prediction_log_shutdown_timeout_seconds=0.5,
    )
    ids = [f"{prefix}{n}" for n in range(80)]
    app = create_app(settings, artifact)
    async with running(app) as client:
        await proxy.blackhole()
        await _predict(client, ids)
        writer = _writer(app)
        began = time.perf_counter()
    assert time.perf_counter() - began < 5.0
    assert writer.stats().rows_spilled == 80
    assert (await logged_rows(database, prefix)) == []

    await proxy.pass_through()
    successor = create_app(_settings(artifact_dir, database, spill_path), artifact)
    async with running(successor):
        await _wait_for(lambda: _writer(successor).stats().rows_replayed == 80)
    await _assert_exactly_once(database, prefix, ids)


async def test_the_service_starts_and_answers_with_the_database_down(
    database: str,
    proxy: TcpProxy,
    artifact_dir: Path,
    artifact: ModelArtifact,
    spill_path: Path,
    prefix: str,
) -> None:
    await proxy.refuse()
    ids = [f"{prefix}{n}" for n in range(50)]
    app = create_app(_settings(artifact_dir, _through(proxy, database), spill_path), artifact)
    async with running(app) as client:
        answer_times = await _predict(client, ids)
        writer = _writer(app)
        await _wait_for(lambda: writer.stats().outage)
        await proxy.pass_through()
        await _wait_for(lambda: writer.stats().queue_depth == 0 and not writer.stats().outage)
    assert max(answer_times) < ANSWER_BOUND
    await _assert_exactly_once(database, prefix, ids)
