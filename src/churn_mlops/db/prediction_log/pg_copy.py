"""The prediction log's PostgreSQL writes: binary COPY on a connection of the log's own.

Through SQLAlchemy's pool each batch paid a pool checkout with its pre-ping round trip, a
BEGIN and a COMMIT, the reset's ROLLBACK on return and the greenlet switches around them, and
the customer lookup's `varchar[]` parameter went through asyncpg's array encoder, which asks
`isinstance(x, collections.abc.Iterable)` of every name: 3.06 us of the worker's CPU a row of
500-row batches. Here the log keeps one asyncpg connection, sends the lookup's names as one
JSON text, and a batch that fits one COPY is that COPY alone (a single statement is atomic):
1.75 us a row (docs/performance.md, "A connection of the log's own").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from asyncpg.exceptions import ForeignKeyViolationError, UniqueViolationError

from churn_mlops.db.prediction_log.ids import LoggedPrediction
from churn_mlops.db.read_pool import connection_lost

# Rows per COPY: about 2 ms of encoding in the event loop before it can serve a request again.
COPY_CHUNK_ROWS = 1500
CONNECT_SECONDS = 5.0
"""The longest a write waits for its connection to open (the writer's budget cuts it sooner)."""
APPLICATION_NAME = "churn-mlops-log"
_STAGING_TABLE = "churn_predictions_staging"
_STAGING_TYPES = (
    *("uuid", "varchar", "varchar", "float8", "bool", "bool", "float8", "float8"),
    *("varchar", "float8", "bytea"),
)
_COLUMNS = ("customer_id", *LoggedPrediction._fields)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresCopySink:
    """Writes batches to `predictions` on the PostgreSQL at `url` (a plain postgresql:// URL).

    The batch's customers are looked up in one statement, then the rows are COPYed straight
    into the table. COPY cannot skip a row already stored: a batch that meets one (a write
    retried after its commit was not acknowledged) or a customer deleted meanwhile is written
    again through a staging table and one idempotent `INSERT ... SELECT ... ON CONFLICT DO
    NOTHING` (`_StagedCopy`). Per row of 500-row batches on the local PostgreSQL, server CPU:
    6.5 us direct against 13.5 us staged (docs/performance.md, "Prediction log").

    The connection is opened at the first write. A write takes it for its duration: a write
    that fails other than by PostgreSQL refusing its rows, or that is cancelled (the writer's
    budget ran out), terminates it, and the next write opens another. A connection the
    database dropped while idle fails its write before any row is stored; the write runs once
    more on a new connection.
    """

    def __init__(self, url: str, *, statement_timeout_ms: int = 5000) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("the prediction log's COPY takes a plain postgresql:// URL")
        self.url = url
        self.statement_timeout_ms = statement_timeout_ms
        self._idle: asyncpg.Connection | None = None
        self._lookup = (
            'SELECT "external_id", "id" FROM "customers" '
            'WHERE "external_id" IN (SELECT json_array_elements_text($1::json))'
        )
        self._staged = _StagedCopy()

    async def write(self, rows: Sequence[LoggedPrediction]) -> int:
        """Insert `rows` atomically, skipping ids already stored; the number inserted."""
        if not rows:
            return 0
        try:
            return await self._write_once(rows)
        except Exception as error:
            if not connection_lost(error):
                raise
            return await self._write_once(rows)

    async def close(self) -> None:
        """Close the idle connection; a later write opens another."""
        idle, self._idle = self._idle, None
        if idle is not None:
            await idle.close()

    async def _write_once(self, rows: Sequence[LoggedPrediction]) -> int:
        connection = await self._take()
        try:
            inserted = await self._copy(connection, rows)
        except BaseException as error:
            if isinstance(error, asyncpg.PostgresError) and not connection_lost(error):
                self._give_back(connection)  # the database refused the rows, the link is fine
            else:
                # Cut short mid-statement (cancelled, a broken link, an encoding error): the
                # connection's state is unknown, and reusing it could wait on a silent server.
                connection.terminate()
            raise
        self._give_back(connection)
        return inserted

    async def _copy(self, connection: asyncpg.Connection, rows: Sequence[LoggedPrediction]) -> int:
        try:
            records = _with_customers(rows, await self._customers(connection, rows))
            if len(records) <= COPY_CHUNK_ROWS:
                await _copy_in_chunks(connection, "predictions", records, _COLUMNS)
            else:
                async with connection.transaction():
                    await _copy_in_chunks(connection, "predictions", records, _COLUMNS)
            return len(rows)
        except (UniqueViolationError, ForeignKeyViolationError):
            return await self._staged.write(connection, rows)

    async def _customers(
        self, connection: asyncpg.Connection, rows: Sequence[LoggedPrediction]
    ) -> dict[str, int]:
        named = list({row.external_customer_id for row in rows} - {None})
        if not named:
            return {}
        return dict(await connection.fetch(self._lookup, orjson.dumps(named).decode()))

    async def _take(self) -> asyncpg.Connection:
        idle, self._idle = self._idle, None
        if idle is not None and not idle.is_closed():
            return idle
        return await asyncpg.connect(
            self.url,
            timeout=CONNECT_SECONDS,
            server_settings={
                "statement_timeout": str(self.statement_timeout_ms),
                "application_name": APPLICATION_NAME,
            },
        )

    def _give_back(self, connection: asyncpg.Connection) -> None:
        if self._idle is None:
            self._idle = connection
        else:  # another write opened one meanwhile (this one had been abandoned): keep one
            connection.terminate()


class _StagedCopy:
    """COPY into a temporary staging table, then one idempotent insert from it."""

    def __init__(self) -> None:
        fields = LoggedPrediction._fields
        columns = ", ".join(
            f"{_quote(name)} {kind}" for name, kind in zip(fields, _STAGING_TYPES, strict=True)
        )
        # ON COMMIT DELETE ROWS: each batch starts empty; the table lives as long as the
        # connection. IF NOT EXISTS in every batch keeps it right behind a transaction pooler.
        self._create = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING_TABLE} ({columns}) "
            "ON COMMIT DELETE ROWS"
        )
        values = [f"s.{_quote(name)}" for name in fields]
        values[fields.index("created_at")] = f"to_timestamp(s.{_quote('created_at')})"
        target = ", ".join(_quote(name) for name in _COLUMNS)
        self._insert = (
            f'INSERT INTO "predictions" ({target}) '  # noqa: S608 - our own column names
            f'SELECT c."id", {", ".join(values)} FROM {_STAGING_TABLE} AS s '
            'LEFT JOIN "customers" AS c ON c."external_id" = s."external_customer_id" '
            'ON CONFLICT ("id") DO NOTHING'
        )

    async def write(self, connection: asyncpg.Connection, rows: Sequence[LoggedPrediction]) -> int:
        async with connection.transaction():
            await connection.execute(self._create)
            await _copy_in_chunks(connection, _STAGING_TABLE, rows, LoggedPrediction._fields)
            status: str = await connection.execute(self._insert)
        return int(status.rsplit(" ", 1)[1])  # "INSERT 0 <rows>"


def _with_customers(
    rows: Sequence[LoggedPrediction], customer_ids: dict[str, int]
) -> list[tuple[Any, ...]]:
    """The rows as `predictions` takes them: the customer's key first, `created_at` a datetime.
    Unpacked by name rather than sliced: 0.5 us a row against 1.0 (timeit, 500 rows)."""
    lookup = customer_ids.get
    stamp = datetime.fromtimestamp
    return [
        (
            lookup(customer) if customer is not None else None,
            row_id,
            customer,
            version,
            probability,
            churns,
            cached,
            latency,
            stamp(created, UTC),
            challenger,
            challenger_probability,
            features,
        )
        for (
            row_id,
            customer,
            version,
            probability,
            churns,
            cached,
            latency,
            created,
            challenger,
            challenger_probability,
            features,
        ) in rows
    ]


async def _copy_in_chunks(
    connection: asyncpg.Connection,
    table: str,
    records: Sequence[Iterable[Any]],
    columns: Sequence[str],
) -> None:
    for start in range(0, len(records), COPY_CHUNK_ROWS):
        await connection.copy_records_to_table(
            table, records=records[start : start + COPY_CHUNK_ROWS], columns=columns
        )
