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


class QueryCounter:
    """Counts the statements an engine sends while `counting()` is open."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.statements: list[str] = []

    def _record(self, *args: Any) -> None:
        self.statements.append(args[2])

    @contextmanager
    def counting(self) -> Iterator[list[str]]:
        self.statements = []
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._record)
        try:
            yield self.statements
        finally:
            event.remove(self.engine.sync_engine, "before_cursor_execute", self._record)
