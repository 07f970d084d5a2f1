"""The prediction log's sink on a database: one idempotent write of each batch."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Insert

from churn_mlops.db.engine import plain_postgres_url, sqlite_path
from churn_mlops.db.prediction_log.ids import LoggedPrediction
from churn_mlops.db.prediction_log.pg_copy import PostgresCopySink
from churn_mlops.db.prediction_log.sqlite_sink import SqliteThreadSink


class SqlPredictionSink:
    """Writes batches to the `predictions` table through an AsyncEngine, on PostgreSQL or SQLite.

    Each batch atomically, `customer_id` resolved from the unique `customers.external_id`,
    the ids already stored skipped:

    - PostgreSQL: binary COPY straight into `predictions` on a connection of the log's own
      (`pg_copy.PostgresCopySink`), through a staging table for a batch that meets stored ids.
    - SQLite file: the batch in a thread of its own (`SqliteThreadSink`), off the event loop.
    - SQLite in memory (tests): SQLAlchemy's "insertmanyvalues" renders the executemany of an
      INSERT ... RETURNING as one multi-row VALUES statement, with a scalar subquery per row.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        predictions: Table,
        customers: Table,
        *,
        statement_timeout_ms: int = 5000,
    ) -> None:
        self.engine = engine
        self._statement = _insert_statement(engine.dialect.name, predictions, customers)
        self._copy = (
            PostgresCopySink(plain_postgres_url(engine), statement_timeout_ms=statement_timeout_ms)
            if engine.dialect.name == "postgresql"
            else None
        )
        path = sqlite_path(engine.url.render_as_string(hide_password=False))
        self._thread = None if path is None else SqliteThreadSink(path)

    @classmethod
    def for_engine(cls, engine: AsyncEngine, statement_timeout_ms: int = 5000) -> SqlPredictionSink:
        from churn_mlops.db.models import Base

        tables = Base.metadata.tables
        return cls(
            engine,
            tables["predictions"],
            tables["customers"],
            statement_timeout_ms=statement_timeout_ms,
        )

    async def close(self) -> None:
        """Close the connection the sink holds of its own (PostgreSQL's, the SQLite thread's)."""
        if self._copy is not None:
            await self._copy.close()
        if self._thread is not None:
            await self._thread.close()

    async def write(self, rows: Sequence[LoggedPrediction]) -> int:
        """Insert `rows` in one transaction, skipping ids already stored; the number inserted."""
        if not rows:
            # SQLAlchemy would run an empty executemany as one INSERT of defaults, which fails.
            return 0
        if self._copy is not None:
            return await self._copy.write(rows)
        if self._thread is not None:
            return await self._thread.write(rows)
        parameters = [
            {
                "id": uuid.UUID(hex=row.id),
                "lookup_external_id": row.external_customer_id,
                "external_customer_id": row.external_customer_id,
                "model_version": row.model_version,
                "probability": row.probability,
                "will_churn": row.will_churn,
                "cached": row.cached,
                "latency_ms": row.latency_ms,
                "created_at": datetime.fromtimestamp(row.created_at, UTC),
                "challenger_version": row.challenger_version,
                "challenger_probability": row.challenger_probability,
                "features": row.features,
            }
            for row in rows
        ]
        async with self.engine.begin() as connection:
            result = await connection.execute(self._statement, parameters)
            return len(result.all())


def _insert_statement(dialect: str, predictions: Table, customers: Table) -> Insert:
    if dialect == "postgresql":
        insert: Callable[[Table], Any] = postgresql.insert
    elif dialect == "sqlite":
        insert = sqlite.insert
    else:
        raise ValueError(f"the prediction log supports PostgreSQL and SQLite, not {dialect}")
    customer_id = (
        select(customers.c.id)
        .where(customers.c.external_id == bindparam("lookup_external_id"))
        .scalar_subquery()
    )
    # RETURNING makes SQLAlchemy use insertmanyvalues (one multi-row statement) for the
    # executemany on asyncpg and aiosqlite, and tells how many rows were new.
    statement: Insert = (
        insert(predictions)
        .values(customer_id=customer_id)
        .on_conflict_do_nothing(index_elements=[predictions.c.id])
        .returning(predictions.c.id)
    )
    return statement
