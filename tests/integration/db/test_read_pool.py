"""The customer reads' asyncpg pool: opened by the first read, a read within its budget or
ReadsUnavailable, never reopened once closed, and cut when the database does not answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from churn_mlops.db.engine import Database
from churn_mlops.db.read_pool import ReadPool, ReadsUnavailable
from churn_mlops.settings import Settings
from tests.fixtures.postgres import POSTGRES_USER
from tests.fixtures.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def proxy(postgres_proxy: TcpProxy) -> TcpProxy:
    return postgres_proxy


def _pool(proxy: TcpProxy, max_size: int = 2) -> ReadPool:
    url = f"postgresql://{POSTGRES_USER}@{proxy.host}:{proxy.port}/test"
    return ReadPool(url, max_size=max_size, statement_timeout_ms=1000, connect_seconds=5.0)


async def test_a_read_opens_the_pool_and_answers(proxy: TcpProxy) -> None:
    reads = _pool(proxy)
    try:
        rows = await reads.fetch("SELECT $1::int + 1", 41, budget=5.0)
    finally:
        await reads.close()
    assert rows[0][0] == 42
    assert proxy.accepted == 1


async def test_a_blackholed_database_is_unavailable_within_the_budget(proxy: TcpProxy) -> None:
    reads = _pool(proxy)
    await reads.fetch("SELECT 1", budget=5.0)  # a pooled, idle connection
    await proxy.blackhole()
    start = time.perf_counter()
    try:
        with pytest.raises(ReadsUnavailable):
            await reads.fetch("SELECT 1", budget=0.5)
        took = time.perf_counter() - start
    finally:
        await reads.close(limit_seconds=0.5)
    assert took < 1.5


async def test_a_refusing_database_is_unavailable(proxy: TcpProxy) -> None:
    reads = _pool(proxy)
    await proxy.refuse()
    try:
        with pytest.raises(ReadsUnavailable):
            await reads.fetch("SELECT 1", budget=2.0)
    finally:
        await reads.close()


async def test_a_pooled_connection_the_database_dropped_costs_no_read(proxy: TcpProxy) -> None:
    reads = _pool(proxy)
    try:
        await reads.fetch("SELECT 1", budget=5.0)  # a pooled, idle connection
        # Reset it and read at once, before the event loop has seen the reset: the read meets
        # the dead connection, then runs again on a new one.
        await proxy.reset()
        await proxy.pass_through()
        rows = await reads.fetch("SELECT $1::int + 1", 1, budget=5.0)
    finally:
        await reads.close()
    assert rows[0][0] == 2
    assert proxy.accepted == 2


async def test_a_read_is_retried_once_only(proxy: TcpProxy) -> None:
    reads = _pool(proxy)
    await reads.fetch("SELECT 1", budget=5.0)
    await proxy.reset()  # and every new connection too: the retry fails as well
    try:
        with pytest.raises(ReadsUnavailable):
            await reads.fetch("SELECT 1", budget=5.0)
    finally:
        await reads.close()
    assert proxy.accepted == 2


async def test_reads_past_the_pool_size_wait_in_line_for_a_connection(proxy: TcpProxy) -> None:
    reads = _pool(proxy, max_size=1)
    try:
        answers = await asyncio.gather(
            *(reads.fetch("SELECT $1::int FROM pg_sleep(0.1)", n, budget=5.0) for n in range(3))
        )
    finally:
        await reads.close()
    assert [rows[0][0] for rows in answers] == [0, 1, 2]
    assert proxy.accepted == 1


async def test_a_read_that_waits_past_its_budget_is_unavailable_and_takes_nothing(
    proxy: TcpProxy,
) -> None:
    reads = _pool(proxy, max_size=1)
    try:
        slow = await _holding_the_connection(reads, 0.5, budget=5.0)
        with pytest.raises(ReadsUnavailable):
            await reads.fetch("SELECT 1", budget=0.1)
        await slow
        assert reads.in_use() == 0
        rows = await reads.fetch("SELECT 2", budget=5.0)
    finally:
        await reads.close()
    assert rows[0][0] == 2
    assert proxy.accepted == 1  # the slow read's connection went back and served the last


async def test_a_waiting_read_cancelled_leaves_the_line_without_a_connection(
    proxy: TcpProxy,
) -> None:
    reads = _pool(proxy, max_size=1)
    try:
        slow = await _holding_the_connection(reads, 0.3, budget=5.0)
        waiting = asyncio.create_task(reads.fetch("SELECT 1", budget=5.0))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await slow
        rows = await reads.fetch("SELECT 3", budget=5.0)
    finally:
        await reads.close()
    assert rows[0][0] == 3
    assert proxy.accepted == 1


async def test_a_read_cut_short_frees_its_place_for_the_next_in_line(proxy: TcpProxy) -> None:
    reads = _pool(proxy, max_size=1)
    try:
        cut = await _holding_the_connection(reads, 3, budget=0.3)
        waiting = asyncio.create_task(reads.fetch("SELECT 4", budget=5.0))
        with pytest.raises(ReadsUnavailable):
            await cut
        rows = await waiting
    finally:
        await reads.close()
    assert rows[0][0] == 4
    # The cut connection was closed (asyncpg sent its cancel request on a connection of its own)
    # and the read in line opened another rather than waiting for its budget to run out.
    assert proxy.accepted >= 2
    assert reads.in_use() == 0


async def test_closing_the_pool_turns_away_the_reads_in_line(proxy: TcpProxy) -> None:
    reads = _pool(proxy, max_size=1)
    slow = await _holding_the_connection(reads, 0.3, budget=5.0)
    waiting = asyncio.create_task(reads.fetch("SELECT 1", budget=5.0))
    await asyncio.sleep(0.05)
    await reads.close()
    with pytest.raises(ReadsUnavailable, match="closed"):
        await waiting
    assert len(await slow) == 1  # the running read still answers
    assert reads.in_use() == 0  # and its connection was closed, not kept


async def test_closing_with_an_idle_connection_the_database_dropped_closes_the_rest(
    proxy: TcpProxy,
) -> None:
    reads = _pool(proxy)
    await asyncio.gather(*(reads.fetch("SELECT pg_sleep(0.1)", budget=5.0) for _ in range(2)))
    await proxy.reset()
    await reads.close()  # one connection's failed goodbye raises nothing
    assert reads.in_use() == 0
    with pytest.raises(ReadsUnavailable, match="closed"):
        await reads.fetch("SELECT 1", budget=5.0)


async def test_a_closed_pool_is_never_reopened(proxy: TcpProxy) -> None:
    reads = _pool(proxy)
    await reads.fetch("SELECT 1", budget=5.0)
    await reads.close()
    with pytest.raises(ReadsUnavailable, match="closed"):
        await reads.fetch("SELECT 1", budget=5.0)
    assert proxy.accepted == 1


async def test_a_bug_in_a_statement_is_not_an_outage(proxy: TcpProxy) -> None:
    reads = _pool(proxy)
    try:
        with pytest.raises(Exception, match="no_such_table") as raised:
            await reads.fetch("SELECT * FROM no_such_table", budget=5.0)
    finally:
        await reads.close()
    assert not isinstance(raised.value, ReadsUnavailable)


def test_the_pool_size_comes_from_the_settings() -> None:
    settings = Settings(
        database_url="postgresql://churn@db.internal:5432/churn", db_read_pool_size=3
    )
    database = Database.from_settings(settings)
    sqlite = Database.from_url("sqlite:///:memory:")
    assert database.reads is not None
    assert database.reads.max_size == 3
    assert database.reads.url == "postgresql://churn@db.internal:5432/churn"
    assert sqlite.reads is None  # SQLite reads through the ORM


async def test_connections_in_use_count_the_reads_pool_beside_the_engines(
    proxy: TcpProxy,
) -> None:
    url = f"postgresql://{POSTGRES_USER}@{proxy.host}:{proxy.port}/test"
    database = Database.from_url(url)
    reads = database.reads
    assert reads is not None
    try:
        assert database.connections_in_use() == 0  # neither pool has opened yet
        await reads.fetch("SELECT 1", budget=5.0)
        assert database.connections_in_use() == 0  # the read gave its connection back
        async with database.engine.connect():
            slow = await _holding_the_connection(reads, 0.5, budget=5.0)
            assert database.connections_in_use() == 2
            await slow
        assert database.connections_in_use() == 0
    finally:
        await database.dispose()


async def _holding_the_connection(
    reads: ReadPool, seconds: float, budget: float
) -> asyncio.Task[Sequence[Any]]:
    """A read of `seconds` started, once it holds its connection."""
    read = asyncio.create_task(reads.fetch(f"SELECT pg_sleep({seconds})", budget=budget))
    await _until(lambda: reads.in_use() == 1)
    return read


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)
