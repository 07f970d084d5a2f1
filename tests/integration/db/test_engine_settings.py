from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from churn_mlops.db.engine import Database
from churn_mlops.settings import Settings

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def test_postgres_sessions_carry_the_statement_timeout(postgres_database: str) -> None:
    settings = Settings(database_url=postgres_database, db_statement_timeout_ms=1234)
    database = Database.from_settings(settings)
    try:
        async with database.sessions() as session:
            assert await session.scalar(text("SHOW statement_timeout")) == "1234ms"
    finally:
        await database.dispose()


async def test_postgres_statement_past_the_timeout_is_cancelled(postgres_database: str) -> None:
    database = Database.from_url(postgres_database, statement_timeout_ms=100)
    try:
        async with database.sessions() as session:
            with pytest.raises(DBAPIError, match="statement timeout"):
                await session.execute(text("SELECT pg_sleep(2)"))
    finally:
        await database.dispose()
