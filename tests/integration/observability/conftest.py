"""Fixtures of the live-quality tests: each runs on SQLite and on PostgreSQL (the module-scoped
`migrated_database_url` of tests/fixtures/postgres.py), on emptied tables."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from churn_mlops.db.engine import Database
from tests.fixtures.outcomes import empty_tables


@pytest.fixture
async def database(migrated_database_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(migrated_database_url)
    await empty_tables(database)
    yield database
    await database.dispose()
