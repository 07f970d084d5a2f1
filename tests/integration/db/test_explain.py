"""PostgreSQL reads a customer's history and recent predictions through their indexes.

The tables are small, so a sequential scan would win on cost: `enable_seqscan = off` makes the
planner show which index it would use when the table is large."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from churn_mlops.db import customer_reads, schema
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Customer, Prediction
from churn_mlops.db.repository import CustomerRepository, PredictionRepository
from tests.fixtures.postgres import fresh_postgres_database

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        schema.upgrade(url)
        yield url


@pytest.fixture
async def connection(postgres_url: str) -> AsyncIterator[AsyncConnection]:
    database = Database.from_url(postgres_url)
    async with database.engine.connect() as connection:
        await connection.execute(text("SET enable_seqscan = off"))
        yield connection
    await database.dispose()


class CapturingSession:
    """Stands in for the session: keeps the statement the repository builds."""

    def __init__(self) -> None:
        self.statements: list[Select[Any]] = []

    def _keep(self, statement: Select[Any], parameters: dict[str, Any] | None) -> None:
        self.statements.append(statement.params(parameters or {}))

    async def scalars(
        self, statement: Select[Any], parameters: dict[str, Any] | None = None
    ) -> list[object]:
        self._keep(statement, parameters)
        return []

    async def scalar(
        self, statement: Select[Any], parameters: dict[str, Any] | None = None
    ) -> object:
        self._keep(statement, parameters)
        return 1

    async def execute(
        self, statement: Select[Any], parameters: dict[str, Any] | None = None
    ) -> list[object]:
        self._keep(statement, parameters)
        return []


async def plan(connection: AsyncConnection, statement: Select[Any]) -> str:
    sql = statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    result = await connection.execute(text(f"EXPLAIN {sql}"))
    return "\n".join(row[0] for row in result)


async def test_recent_predictions_of_a_customer_use_the_customer_index(
    connection: AsyncConnection,
) -> None:
    session = CapturingSession()
    await PredictionRepository(session).recent(customer_external_id="X-1", limit=10)  # type: ignore[arg-type]
    explained = await plan(connection, session.statements[-1])
    assert "ix_predictions_customer_id_created_at" in explained
    assert "Sort" not in explained  # the index yields them newest first


async def test_predictions_since_use_the_created_at_index(connection: AsyncConnection) -> None:
    session = CapturingSession()
    since = datetime(2026, 1, 1, tzinfo=UTC)
    await PredictionRepository(session).recent(since=since, limit=10)  # type: ignore[arg-type]
    explained = await plan(connection, session.statements[-1])
    assert "Index Scan Backward using ix_predictions_created_at" in explained


async def test_customer_page_finds_latest_predictions_through_the_index(
    connection: AsyncConnection,
) -> None:
    session = CapturingSession()
    await CustomerRepository(session).page(after=100, limit=50)  # type: ignore[arg-type]
    explained = await plan(connection, session.statements[-1])
    assert "ix_predictions_customer_id_created_at" in explained
    assert "pk_customers" in explained
    assert "Seq Scan" not in explained


async def test_customer_lookup_uses_the_external_id_index(connection: AsyncConnection) -> None:
    from sqlalchemy import select

    explained = await plan(connection, select(Customer).where(Customer.external_id == "X-1"))
    assert "uq_customers_external_id" in explained
    assert Prediction.__tablename__ not in explained


async def test_the_read_endpoints_statements_use_the_indexes(connection: AsyncConnection) -> None:
    driver: Any = (await connection.get_raw_connection()).driver_connection
    detail = await driver.fetch(f"EXPLAIN {customer_reads.DETAIL_SQL}", "X-1", 10)
    page = await driver.fetch(f"EXPLAIN {customer_reads.PAGE_SQL}", 100, 50)
    detail_plan = "\n".join(row[0] for row in detail)
    page_plan = "\n".join(row[0] for row in page)
    assert "uq_customers_external_id" in detail_plan
    assert "pk_customers" in page_plan
    # The predictions come from the covering index alone, never from the table's pages.
    assert "Index Only Scan using ix_predictions_customer_id_created_at" in detail_plan
    assert "Index Only Scan using ix_predictions_customer_id_created_at" in page_plan
    assert "Seq Scan" not in detail_plan + page_plan
