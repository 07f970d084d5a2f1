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
    executions and, on PostgreSQL, what code sends on the driver's own connection past
    SQLAlchemy (the read endpoints), seen by asyncpg's query logger. The logger also sees some
    of SQLAlchemy's statements (executemany); those count once."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
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

    @contextmanager
    def counting(self) -> Iterator[list[str]]:
        self.statements = []
        self._through_sqlalchemy = []
        pool = self.engine.sync_engine.pool
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._record)
        event.listen(pool, "checkout", self._watch)
        try:
            yield self.statements
        finally:
            event.remove(self.engine.sync_engine, "before_cursor_execute", self._record)
            event.remove(pool, "checkout", self._watch)
            for driver in self._watched:
                driver.remove_query_logger(self._log)
            self._watched.clear()
