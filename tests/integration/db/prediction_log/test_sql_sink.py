"""SqlPredictionSink on SQLite and PostgreSQL: one idempotent insert per batch, customer ids
resolved in it, values stored as given."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, select

from churn_mlops.core.features import EXAMPLE_FEATURES
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Prediction
from churn_mlops.db.prediction_log.ids import identify
from churn_mlops.db.prediction_log.sql_sink import SqlPredictionSink
from tests.integration.db.prediction_log.conftest import add_customers

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
async def database(migrated_database_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(migrated_database_url)
    yield database
    await database.dispose()


async def test_a_batch_is_one_insert_statement_and_a_repeat_inserts_nothing(
    database: Database, migrated_database_url: str
) -> None:
    prefix = f"k{uuid.uuid4().hex[:8]}-"
    known = await add_customers(migrated_database_url, [f"{prefix}known"], dict(EXAMPLE_FEATURES))
    created = 1_790_000_000.123456
    rows = identify(
        [(f"{prefix}known", "v1", 0.75, True, False, 1.25, created)]
        + [(f"{prefix}anon-{n}", "v1", 0.125, False, True, 0.5, created) for n in range(299)]
        + [(None, "v1", 0.5, True, True, 2.0, created)]
    )
    sink = SqlPredictionSink.for_engine(database.engine)
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
    assert len(inserts) == 2

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


async def test_an_empty_batch_inserts_nothing_and_does_not_fail(database: Database) -> None:
    sink = SqlPredictionSink.for_engine(database.engine)

    assert await sink.write([]) == 0
