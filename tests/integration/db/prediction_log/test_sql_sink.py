"""SqlPredictionSink on SQLite and PostgreSQL: one idempotent write per batch (a multi-row
insert on SQLite; on PostgreSQL a COPY straight into the table, or through a staging table for
a batch that needs skipping rows or a customer that went away), customer ids resolved in it,
values stored as given."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, func, select

from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.db import schema
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Prediction
from churn_mlops.db.prediction_log import pg_copy
from churn_mlops.db.prediction_log.ids import identify
from churn_mlops.db.prediction_log.pg_copy import COPY_CHUNK_ROWS
from churn_mlops.db.prediction_log.sql_sink import SqlPredictionSink
from churn_mlops.db.prediction_log.sqlite_sink import SqliteThreadSink
from tests.integration.db.prediction_log.conftest import add_customers

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


SinkFactory = Callable[[Database], SqlPredictionSink]


@pytest.fixture
async def sink_for() -> AsyncIterator[SinkFactory]:
    """`SqlPredictionSink.for_engine` of a database's engine, closed after the test."""
    opened: list[SqlPredictionSink] = []

    def open_sink(database: Database) -> SqlPredictionSink:
        opened.append(SqlPredictionSink.for_engine(database.engine))
        return opened[-1]

    yield open_sink
    for sink in opened:
        await sink.close()


@pytest.fixture
async def database(migrated_database_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(migrated_database_url)
    yield database
    await database.dispose()


@pytest.fixture(scope="module")
def migrated_postgres(postgres_database: str) -> str:
    schema.upgrade(postgres_database)
    return postgres_database


@pytest.fixture
async def postgres(migrated_postgres: str) -> AsyncIterator[Database]:
    """PostgreSQL alone: the COPY path."""
    database = Database.from_url(migrated_postgres)
    yield database
    await database.dispose()


async def test_a_batch_is_stored_once_and_a_repeat_inserts_nothing(
    database: Database,
    migrated_database_url: str,
    sink_for: SinkFactory,
) -> None:
    prefix = f"k{uuid.uuid4().hex[:8]}-"
    known = await add_customers(migrated_database_url, [f"{prefix}known"], dict(EXAMPLE_FEATURES))
    created = 1_790_000_000.123456
    rows = identify(
        [(f"{prefix}known", "v1", 0.75, True, False, 1.25, created)]
        + [(f"{prefix}anon-{n}", "v1", 0.125, False, True, 0.5, created) for n in range(299)]
        + [(None, "v1", 0.5, True, True, 2.0, created)]
    )
    sink = sink_for(database)
    inserts: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            inserts.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        assert await sink.write(rows) == 301
        assert await sink.write(rows[:10]) == 0
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    # Neither goes through SQLAlchemy's cursor: PostgreSQL COPYs on the driver's connection,
    # a SQLite file is written by a worker thread with the standard library's sqlite3.
    assert inserts == []

    async with database.engine.connect() as connection:
        stored = {
            row.id.hex: row
            for row in (
                await connection.execute(
                    select(Prediction).where(Prediction.id.in_([uuid.UUID(r.id) for r in rows]))
                )
            ).all()
        }
    assert set(stored) == {row.id for row in rows}
    first = stored[rows[0].id]
    assert first.customer_id == known[f"{prefix}known"]
    assert (first.external_customer_id, first.model_version) == (f"{prefix}known", "v1")
    assert (first.probability, first.will_churn, first.cached, first.latency_ms) == (
        0.75,
        True,
        False,
        1.25,
    )
    when = first.created_at
    if when.tzinfo is None:  # SQLite keeps no zone; the column holds UTC
        when = when.replace(tzinfo=UTC)
    assert abs((when - datetime.fromtimestamp(created, UTC)).total_seconds()) < 1e-5
    assert stored[rows[-1].id].customer_id is None
    assert stored[rows[-1].id].external_customer_id is None
    assert {stored[row.id].customer_id for row in rows[1:]} == {None}


async def test_an_empty_batch_inserts_nothing_and_does_not_fail(
    database: Database, sink_for: SinkFactory
) -> None:
    sink = sink_for(database)

    assert await sink.write([]) == 0


async def test_a_batch_larger_than_one_copy_is_stored_whole_and_retries_add_only_new_rows(
    postgres: Database,
    sink_for: SinkFactory,
) -> None:
    created = 1_790_000_000.0
    rows = identify(
        [(f"chunk-{n}", "v2", n / 10_000, False, False, 0.5, created) for n in range(3_407)]
    )
    assert len(rows) > 2 * COPY_CHUNK_ROWS
    sink = sink_for(postgres)

    assert await sink.write(rows[:2_000]) == 2_000
    assert await sink.write(rows) == len(rows) - 2_000  # a retry carrying rows already stored

    async with postgres.engine.connect() as connection:
        stored = await connection.execute(
            select(Prediction.id, Prediction.probability).where(Prediction.model_version == "v2")
        )
        probabilities = {row.id.hex: row.probability for row in stored}
    assert probabilities == {row.id: row.probability for row in rows}


async def test_a_failed_batch_stores_none_of_its_rows_and_the_next_one_is_whole(
    postgres: Database,
    sink_for: SinkFactory,
) -> None:
    created = 1_790_000_000.0
    good = identify([(f"ok-{n}", "v3", 0.5, False, False, 0.5, created) for n in range(2_000)])
    broken = [*good[:1_900], good[1_900]._replace(will_churn="yes"), *good[1_901:]]
    sink = sink_for(postgres)

    with pytest.raises(Exception, match="boolean"):
        await sink.write(broken)
    assert await sink.write(good) == len(good)  # nothing of the failed batch was left staged


async def test_a_sqlite_file_is_written_by_a_worker_thread_not_the_event_loop(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sink_for: SinkFactory,
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    await asyncio.to_thread(schema.upgrade, url)
    database = Database.from_url(url)
    writers: list[int] = []
    write = SqliteThreadSink._write

    def spy(self: SqliteThreadSink, rows: Any) -> int:
        writers.append(threading.get_ident())
        return write(self, rows)

    monkeypatch.setattr(SqliteThreadSink, "_write", spy)
    rows = identify([(f"t-{n}", "v4", 0.5, False, False, 0.5, 1_790_000_000.0) for n in range(50)])
    try:
        assert await sink_for(database).write(rows) == 50
        async with database.engine.connect() as connection:
            stored = await connection.scalar(select(func.count()).select_from(Prediction))
    finally:
        await database.dispose()
    assert stored == 50
    assert writers
    assert threading.get_ident() not in writers


async def test_a_new_batch_is_copied_straight_into_the_table_and_a_replay_goes_through_staging(
    postgres: Database,
    migrated_postgres: str,
    monkeypatch: pytest.MonkeyPatch,
    sink_for: SinkFactory,
) -> None:
    prefix = f"d{uuid.uuid4().hex[:8]}-"
    known = await add_customers(migrated_postgres, [f"{prefix}known"], dict(EXAMPLE_FEATURES))
    rows = identify(
        [
            (f"{prefix}known" if n % 2 else None, "v5", 0.5, False, False, 0.5, 1.79e9)
            for n in range(40)
        ]
    )
    copied_into: list[str] = []
    copy = asyncpg.Connection.copy_records_to_table

    async def spy(self: asyncpg.Connection, table: str, **options: Any) -> Any:
        copied_into.append(table)
        return await copy(self, table, **options)

    monkeypatch.setattr(asyncpg.Connection, "copy_records_to_table", spy)
    sink = sink_for(postgres)

    assert await sink.write(rows[:30]) == 30
    assert copied_into == ["predictions"]
    assert await sink.write(rows) == 10  # 30 of them are stored: COPY refuses, staging skips
    assert copied_into == ["predictions", "predictions", "churn_predictions_staging"]

    customers = await _stored_customers(postgres, rows)
    assert customers == {
        row.id: known[f"{prefix}known"] if row.external_customer_id else None for row in rows
    }


async def test_a_customer_deleted_between_lookup_and_copy_leaves_its_rows_anonymous(
    postgres: Database,
    migrated_postgres: str,
    monkeypatch: pytest.MonkeyPatch,
    sink_for: SinkFactory,
) -> None:
    prefix = f"g{uuid.uuid4().hex[:8]}-"
    await add_customers(migrated_postgres, [f"{prefix}kept"], dict(EXAMPLE_FEATURES))
    rows = identify([(f"{prefix}gone", "v6", 0.5, False, False, 0.5, 1.79e9)])

    async def stale_lookup(self: Any, driver: Any, batch: Any) -> dict[str, int]:
        return {f"{prefix}gone": 2**62}  # a key no customer has (any more)

    monkeypatch.setattr(pg_copy.PostgresCopySink, "_customers", stale_lookup)

    assert await sink_for(postgres).write(rows) == 1
    assert await _stored_customers(postgres, rows) == {rows[0].id: None}


async def _stored_customers(database: Database, rows: list[Any]) -> dict[str, int | None]:
    async with database.engine.connect() as connection:
        stored = await connection.execute(
            select(Prediction.id, Prediction.customer_id).where(
                Prediction.id.in_([uuid.UUID(row.id) for row in rows])
            )
        )
        return {row.id.hex: row.customer_id for row in stored}
