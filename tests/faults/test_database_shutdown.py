"""Closing the connection pool never waits long on a database that drops packets: a polite
close waits up to asyncpg's command timeout (10 s) per connection, so a worker's shutdown
would take minutes; past its limit, `Database.dispose` cuts the connections instead."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text

from churn_mlops.db.engine import Database
from tests.fixtures.postgres import POSTGRES_USER
from tests.fixtures.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

CONNECTIONS = 4
LIMIT = 0.5


@pytest.fixture
def proxy(postgres_proxy: TcpProxy) -> TcpProxy:
    return postgres_proxy


async def _open_pool(proxy: TcpProxy) -> Database:
    database = Database.from_url(
        f"postgresql://{POSTGRES_USER}@{proxy.host}:{proxy.port}/test", pool_size=CONNECTIONS
    )

    async def query() -> None:
        async with database.engine.connect() as connection:
            await connection.execute(text("SELECT pg_sleep(0.05)"))

    await asyncio.gather(*(query() for _ in range(CONNECTIONS)))  # all pooled, all idle
    return database


async def test_dispose_cuts_the_connections_of_a_blackholed_database(proxy: TcpProxy) -> None:
    database = await _open_pool(proxy)
    driver_connections = list(database._opened)
    assert len(driver_connections) == CONNECTIONS

    await proxy.blackhole()
    start = time.perf_counter()
    await database.dispose(limit_seconds=LIMIT)
    took = time.perf_counter() - start

    assert took < LIMIT + 1.5  # one polite close alone would take 10 s
    assert all(connection.is_closed() for connection in driver_connections)


async def test_dispose_closes_politely_when_the_database_answers(proxy: TcpProxy) -> None:
    database = await _open_pool(proxy)
    driver_connections = list(database._opened)

    await database.dispose(limit_seconds=LIMIT)

    assert all(connection.is_closed() for connection in driver_connections)
    assert proxy.accepted == CONNECTIONS
