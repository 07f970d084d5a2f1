"""A small asyncpg pool of its own for the customer reads' fast path, on PostgreSQL.

Through SQLAlchemy's pool a read costs a session, a pre-ping round trip and a few greenlet
switches before its one statement; asyncpg's own pool hands out a connection in microseconds
and keeps each statement prepared. A connection the database dropped fails its query, which
answers 503 like any outage, and the pool replaces it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg

UNAVAILABLE_SQLSTATES = ("08", "53", "57", "55000")
"""PostgreSQL's refusals that mean "not now" rather than a bug: connection exceptions (08),
insufficient resources (53: too many connections), operator intervention (57: shutting down,
starting up, a cancelled statement) and a database not accepting connections (55000)."""


class ReadsUnavailable(Exception):
    """The database did not answer a read within its budget, or refused it for now."""


def _unavailable(error: BaseException) -> bool:
    if isinstance(error, OSError | TimeoutError | asyncpg.InterfaceError):
        return True
    if isinstance(error, asyncpg.InternalClientError):  # see _connection_lost
        return True
    state = getattr(error, "sqlstate", None)
    return isinstance(state, str) and state.startswith(UNAVAILABLE_SQLSTATES)


def _connection_lost(error: BaseException) -> bool:
    """The connection is gone, not the database: closed under the read, or an unsolicited
    FATAL (57P01, "terminating connection due to administrator command") that asyncpg meets in
    a state it does not expect (InternalClientError)."""
    if isinstance(error, asyncpg.ConnectionDoesNotExistError | ConnectionError):
        return True
    if isinstance(error, asyncpg.InternalClientError):
        return True
    state = getattr(error, "sqlstate", None)
    return isinstance(state, str) and state.startswith(("08", "57P"))


async def _keep_as_is(connection: Any) -> None:
    """A read leaves nothing behind (no transaction, setting, lock or listener), so a released
    connection needs no reset query: asyncpg's default would cost a round trip per read."""


class ReadPool:
    """Connections for single-statement reads; the pool opens on the first read."""

    def __init__(
        self, url: str, *, max_size: int, statement_timeout_ms: int, connect_seconds: float
    ) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("the read pool takes a plain postgresql:// URL")
        self.url = url
        self.max_size = max_size
        self.statement_timeout_ms = statement_timeout_ms
        self.connect_seconds = connect_seconds
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None
        self._closed = False

    async def fetch(self, sql: str, *arguments: Any, budget: float) -> Sequence[Any]:
        """The rows of one statement, within `budget` seconds (waiting for a connection
        included); ReadsUnavailable if the database does not answer or refuses.

        A pooled connection the database dropped while it sat idle (a restart, an operator's
        pg_terminate_backend, a proxy's reset) fails its read before any row: the read, which
        changes nothing, runs once more on another connection within the same budget."""
        try:
            async with asyncio.timeout(budget):
                try:
                    return await self._fetch_once(sql, arguments)
                except Exception as error:
                    if not _connection_lost(error):
                        raise
                    return await self._fetch_once(sql, arguments)
        except Exception as error:
            if _unavailable(error):
                raise ReadsUnavailable(str(error) or type(error).__name__) from error
            raise

    async def _fetch_once(self, sql: str, arguments: tuple[Any, ...]) -> Sequence[Any]:
        pool = self._pool or await self._open()
        connection = await pool.acquire()
        try:
            rows: Sequence[Any] = await connection.fetch(sql, *arguments)
        except BaseException as error:
            if not isinstance(error, asyncpg.PostgresError):
                # A read cut short leaves the connection mid-reply or cancelling, which
                # releasing would wait for on a database that does not answer. (A connection
                # closed under the read, ConnectionDoesNotExistError, has left the pool.)
                connection.terminate()
            await pool.release(connection)
            raise
        await pool.release(connection)
        return rows

    def in_use(self) -> int:
        """Connections a read holds now (0 before the first read opens the pool)."""
        pool = self._pool
        return 0 if pool is None else pool.get_size() - pool.get_idle_size()

    async def _open(self) -> asyncpg.Pool:
        if self._closed:  # a read that arrives while the worker stops must not reopen it
            raise ReadsUnavailable("the read pool is closed")
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self.url,
                    min_size=0,
                    max_size=self.max_size,
                    timeout=self.connect_seconds,
                    reset=_keep_as_is,
                    server_settings={
                        "statement_timeout": str(self.statement_timeout_ms),
                        "application_name": "churn-mlops-reads",
                    },
                )
            return self._pool

    async def close(self, limit_seconds: float = 2.0) -> None:
        """Close the connections; past `limit_seconds` (a database that drops packets), cut
        them."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(limit_seconds):
                await pool.close()
        except TimeoutError:
            pool.terminate()
