"""Fixtures of the database tests: every test runs on SQLite and on PostgreSQL (the
module-scoped `database_url` of tests/fixtures/postgres.py), on emptied tables."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import delete, event
from sqlalchemy.ext.asyncio import AsyncEngine

from churn_mlops.db.engine import Database
from churn_mlops.db.models import Customer, Prediction
from churn_mlops.db.read_pool import ReadPool


@pytest.fixture
async def database(migrated_database_url: str) -> AsyncIterator[Database]:
    """The module's migrated database with empty customers and predictions tables."""
    database = Database.from_url(migrated_database_url)
    async with database.engine.begin() as connection:
        await connection.execute(delete(Prediction))
        await connection.execute(delete(Customer))
    yield database
    await database.dispose()


# What asyncpg sends besides the queries: SQLAlchemy's pre-ping and transaction control.
_NOT_QUERIES = {";", "BEGIN;", "BEGIN", "COMMIT;", "ROLLBACK;", "COMMIT", "ROLLBACK"}


class QueryCounter:
    """Counts the statements an engine sends while `counting()` is open: SQLAlchemy's cursor
    executions, on PostgreSQL what code sends on the driver's own connection past SQLAlchemy
    (seen by asyncpg's query logger, which also sees some of SQLAlchemy's statements, such as
    executemany: those count once), and the statement of each read on `reads` (the read pool)."""

    def __init__(self, engine: AsyncEngine, reads: ReadPool | None = None) -> None:
        self.engine = engine
        self.reads = reads
        self.statements: list[str] = []
        self._through_sqlalchemy: list[str] = []
        self._watched: list[Any] = []

    def _record(self, *args: Any) -> None:
        self.statements.append(args[2])
        self._through_sqlalchemy.append(args[2])

    def _log(self, record: Any) -> None:
        if record.query in self._through_sqlalchemy:
            self._through_sqlalchemy.remove(record.query)
        elif record.query.strip() not in _NOT_QUERIES:
            self.statements.append(record.query)

    def _watch(self, dbapi_connection: Any, *_: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if hasattr(driver, "add_query_logger") and driver not in self._watched:
            driver.add_query_logger(self._log)
            self._watched.append(driver)

    def _counted(self, fetch: Any) -> Any:
        async def counted(sql: str, *arguments: Any, budget: float) -> Any:
            self.statements.append(sql)
            return await fetch(sql, *arguments, budget=budget)

        return counted

    @contextmanager
    def counting(self) -> Iterator[list[str]]:
        self.statements = []
        self._through_sqlalchemy = []
        pool = self.engine.sync_engine.pool
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._record)
        event.listen(pool, "checkout", self._watch)
        if self.reads is not None:
            self.reads.fetch = self._counted(self.reads.fetch)  # type: ignore[method-assign]
        try:
            yield self.statements
        finally:
            if self.reads is not None:
                del self.reads.fetch  # the class's method again
            event.remove(self.engine.sync_engine, "before_cursor_execute", self._record)
            event.remove(pool, "checkout", self._watch)
            for driver in self._watched:
                driver.remove_query_logger(self._log)
            self._watched.clear()
