"""PostgresCopySink on the machine's PostgreSQL: the log's one connection of its own, replaced
when the database drops it or a write is cut short, and the customer lookup's names sent as
JSON text whatever characters they hold."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.db import schema
from churn_mlops.db.prediction_log.ids import LoggedPrediction, identify
from churn_mlops.db.prediction_log.pg_copy import APPLICATION_NAME, PostgresCopySink
from tests.integration.db.prediction_log.conftest import add_customers

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def url(postgres_database: str) -> str:
    schema.upgrade(postgres_database)
    return postgres_database


@pytest.fixture
async def admin(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own, to watch and disturb the sink's."""
    connection = await asyncpg.connect(url)
    yield connection
    await connection.close()


@pytest.fixture
async def sink(url: str) -> AsyncIterator[PostgresCopySink]:
    sink = PostgresCopySink(url)
    yield sink
    await sink.close()


def _batch(size: int, customer: str | None = None) -> list[LoggedPrediction]:
    name = customer or f"anon-{uuid.uuid4().hex[:8]}"
    return identify([(name, "v7", 0.25, False, False, 0.5, 1.79e9) for _ in range(size)])


async def _log_backends(admin: asyncpg.Connection, **where: str) -> list[int]:
    """The backends of this database that the sink opened, optionally in a wait state."""
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = $1 AND ($2::text IS NULL OR wait_event_type = $2)",
        APPLICATION_NAME,
        where.get("waiting_on"),
    )
    return sorted(row["pid"] for row in rows)


async def _until(check: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s")
        await asyncio.sleep(0.02)


async def _stored(admin: asyncpg.Connection, rows: list[LoggedPrediction]) -> int:
    stored: int = await admin.fetchval(
        "SELECT count(*) FROM predictions WHERE id = ANY($1::uuid[])", [row.id for row in rows]
    )
    return stored


async def test_the_log_writes_every_batch_on_one_connection_of_its_own_and_closes_it(
    sink: PostgresCopySink, admin: asyncpg.Connection
) -> None:
    assert await _log_backends(admin) == []  # nothing opened before the first write

    seen = []
    for size in (1, 500, 3):
        assert await sink.write(_batch(size)) == size
        seen.append(await _log_backends(admin))
    assert len(seen[0]) == 1
    assert seen == [seen[0]] * 3

    await sink.close()
    await _until(lambda: _none_left(admin))


async def _none_left(admin: asyncpg.Connection) -> bool:
    return await _log_backends(admin) == []


async def test_a_connection_the_database_dropped_is_replaced_within_the_write(
    sink: PostgresCopySink, admin: asyncpg.Connection
) -> None:
    first = _batch(5)
    assert await sink.write(first) == 5
    [dropped] = await _log_backends(admin)

    # The write follows at once, before the driver has read the database's goodbye (nearly
    # always): the idle connection looks open, and its first statement finds it gone.
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", dropped)
    second = _batch(7)
    assert await sink.write(second) == 7  # no error: the write ran again on a new connection

    [replacement] = await _log_backends(admin)
    assert replacement != dropped
    assert await _stored(admin, first + second) == 12


async def test_a_write_cut_short_gives_up_its_connection_and_a_retry_stores_the_rows_once(
    sink: PostgresCopySink, admin: asyncpg.Connection
) -> None:
    assert await sink.write(_batch(1)) == 1  # the connection is open and idle
    rows = _batch(40)
    async with admin.transaction():
        await admin.execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")
        write = asyncio.ensure_future(sink.write(rows))
        await _until(lambda: _waiting_on_lock(admin))
        [blocked] = await _log_backends(admin, waiting_on="Lock")
        write.cancel()  # as the writer does when the write's budget runs out
        with pytest.raises(asyncio.CancelledError):
            await write
    # The lock is gone: the cut connection's COPY may still have been stored, or not. The
    # retry carries the same ids, so either way each row is there once.
    await _until(lambda: _gone(admin, blocked))

    assert await sink.write(rows) in (0, len(rows))
    assert await _stored(admin, rows) == len(rows)
    assert blocked not in await _log_backends(admin)


async def _waiting_on_lock(admin: asyncpg.Connection) -> bool:
    return bool(await _log_backends(admin, waiting_on="Lock"))


async def _gone(admin: asyncpg.Connection, pid: int) -> bool:
    return pid not in await _log_backends(admin)


async def test_customers_are_linked_whatever_characters_their_ids_hold(
    sink: PostgresCopySink, url: str, admin: asyncpg.Connection
) -> None:
    prefix = f"j{uuid.uuid4().hex[:6]}"
    names = [f'{prefix} "quoted", {{braced}}', f"{prefix}\\back\\slash", f"{prefix}-é-東京"]
    keys = await add_customers(url, names, dict(EXAMPLE_FEATURES))
    rows = [row for name in names for row in _batch(2, name)] + _batch(2, f"{prefix}-unknown")

    assert await sink.write(rows) == len(rows)

    stored = await admin.fetch(
        "SELECT id::text AS id, customer_id FROM predictions WHERE id = ANY($1::uuid[])",
        [row.id for row in rows],
    )
    linked = {uuid.UUID(row["id"]).hex: row["customer_id"] for row in stored}
    assert linked == {row.id: keys.get(row.external_customer_id or "") for row in rows}
