"""The prediction log's sink on a SQLite file, written from a thread of its own.

Through SQLAlchemy and aiosqlite a batch cost the event loop about 15 us of Python per row
(bind processing of every value, a scalar subquery per row) and a round of futures per
statement, on the thread that answers requests: a saturated embedded service fell behind,
spilled and replayed continuously (p99 633 ms at 512 connections, docs/performance.md). Here the
whole batch runs in one thread with the standard library's `sqlite3`, the values in the forms
SQLAlchemy stores on SQLite (ids as 32 hex digits, times as UTC text with microseconds, booleans
as 0/1), so the ORM reads the rows as if it had written them.

The sqlite3 module releases the GIL while SQLite steps a statement and takes it back after; while
the event loop keeps the GIL busy, taking it back waits for the interpreter's switch interval
(5 ms). An `executemany` steps once per row: 500 rows took 1.3 to 1.6 s beside a busy thread
(4 ms idle). Here a batch goes in a few multi-row INSERTs of `_CHUNK_ROWS` rows, the last one
padded with copies of its last row (`ON CONFLICT (id) DO NOTHING` skips them), on a connection
the thread keeps, so each statement is prepared once: 500 rows in 21 to 31 ms beside a busy
thread, 3.3 ms idle (docs/performance.md, "The embedded SQLite log under overload"). The
batch's customers are looked up once, under the write lock, rather than by a subquery per row,
and a row with no challenger and no features binds 9 values, not 12: 3.8 to 4.2 us of CPU a row
against 6.5 to 7.0 (docs/performance.md, "The SQLite log's customers looked up once").
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from churn_mlops.db.prediction_log.ids import LoggedPrediction, named_customers

# How long a write waits for another connection's lock (the service's own engine, a replay).
_BUSY_TIMEOUT_MS = 5000
_COLUMNS = (
    *("id", "customer_id", "external_customer_id", "model_version", "probability"),
    *("will_churn", "cached", "latency_ms", "created_at", "challenger_version"),
    *("challenger_probability", "features"),
)
_PLAIN_WIDTH = 9
"""A row with no challenger and no features binds the first 9 columns; the last 3 are NULL
literals in its statement."""
# Rows per statement, largest first: a batch's tail is padded up to the smallest that holds it.
_CHUNK_ROWS = (512, 64, 8)
_LOOKUP = (
    "SELECT external_id, id FROM customers WHERE external_id IN (SELECT value FROM json_each(?))"
)


@cache
def _insert(rows: int, width: int = len(_COLUMNS)) -> str:
    row = "(" + ", ".join(["?"] * width + ["NULL"] * (len(_COLUMNS) - width)) + ")"
    return (
        f"INSERT INTO predictions ({', '.join(_COLUMNS)}) "  # noqa: S608 - our own column names
        f"VALUES {', '.join([row] * rows)} ON CONFLICT (id) DO NOTHING"
    )


# SQLAlchemy's storage format of a DateTime on SQLite (always six digits of microseconds).
_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"


def _parameters(
    rows: Sequence[LoggedPrediction], customers: dict[str, int]
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The rows in `_insert`'s order, the customer's key resolved, created_at as SQLAlchemy's
    text, formatted once per distinct time (the rows of a batch request share theirs; strftime
    is about 2 us): (rows of `_PLAIN_WIDTH` values, rows of all the columns)."""
    texts: dict[float, str] = {}
    customer = customers.get
    plain: list[tuple[object, ...]] = []
    full: list[tuple[object, ...]] = []
    for row in rows:
        created = row[7]
        if (text := texts.get(created)) is None:
            text = texts[created] = datetime.fromtimestamp(created, UTC).strftime(_SQLITE_DATETIME)
        external = row[1]
        key = None if external is None else customer(external)
        if row[8] is None and row[9] is None and row[10] is None:
            plain.append((row[0], key, *row[1:7], text))
        else:
            full.append((row[0], key, *row[1:7], text, *row[8:]))
    return plain, full


def _chunks(parameters: list[tuple[object, ...]], sizes: Sequence[int]) -> list[list[object]]:
    """The rows as the flat parameters of statements of `sizes` rows: full chunks of the
    largest size, then the rest padded with copies of its last row to the smallest size that
    holds it (a copy inserts nothing: its id is taken)."""
    largest = sizes[0]
    chunks = []
    for start in range(0, len(parameters), largest):
        part = parameters[start : start + largest]
        size = min(size for size in sizes if size >= len(part))
        part.extend([part[-1]] * (size - len(part)))
        chunks.append([value for row in part for value in row])
    return chunks


def _customers(connection: sqlite3.Connection, rows: Sequence[LoggedPrediction]) -> dict[str, int]:
    """The keys of the batch's known customers, in one statement."""
    named = named_customers(rows)
    if named is None:
        return {}
    return dict(connection.execute(_LOOKUP, (named,)).fetchall())


class SqliteThreadSink:
    """Writes batches to the `predictions` table of the SQLite file at `path`, in a thread of
    its own on a connection that thread keeps (opened at the first write, closed by `close`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prediction-log")
        self._connection: sqlite3.Connection | None = None
        self._sizes: tuple[int, ...] = _CHUNK_ROWS

    async def write(self, rows: Sequence[LoggedPrediction]) -> int:
        """Insert `rows` in one transaction, skipping ids already stored; the number inserted."""
        if not rows:
            return 0
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._write, rows)

    async def close(self) -> None:
        """Close the connection once a write in progress has ended; later writes reopen it."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)

    def _open(self) -> sqlite3.Connection:
        # Autocommit: `_write` begins and ends its own transaction.
        connection = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_MS / 1000.0, isolation_level=None
        )
        # A statement binds 12 values a row; an older SQLite may allow fewer than 512 rows' worth.
        most = connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(_COLUMNS)
        self._sizes = tuple(sorted({min(size, most) for size in _CHUNK_ROWS}, reverse=True))
        return connection

    def _write(self, rows: Sequence[LoggedPrediction]) -> int:
        if self._connection is None:
            self._connection = self._open()
        connection = self._connection
        # The write lock first: no customer can go between the lookup and the inserts.
        connection.execute("BEGIN IMMEDIATE")
        try:
            plain, full = _parameters(rows, _customers(connection, rows))
            inserted = 0
            for width, parameters in ((_PLAIN_WIDTH, plain), (len(_COLUMNS), full)):
                if parameters:
                    for values in _chunks(parameters, self._sizes):
                        statement = _insert(len(values) // width, width)
                        inserted += connection.execute(statement, values).rowcount
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return inserted

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
