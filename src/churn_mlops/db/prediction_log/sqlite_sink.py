"""The prediction log's sink on a SQLite file, written from a worker thread.

Through SQLAlchemy and aiosqlite a batch cost the event loop about 15 us of Python per row
(bind processing of every value, a scalar subquery per row) and a round of futures per
statement, on the thread that answers requests: a saturated embedded service fell behind,
spilled and replayed continuously (p99 633 ms at 512 connections, docs/performance.md). Here the
whole batch runs in a thread with the standard library's `sqlite3`: one `executemany` of plain
tuples in one transaction, the values in the forms SQLAlchemy stores on SQLite (ids as 32 hex
digits, times as UTC text with microseconds, booleans as 0/1), so the ORM reads the rows as if
it had written them. The sqlite3 module releases the GIL while SQLite works.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from churn_mlops.db.prediction_log.ids import LoggedPrediction

# How long a write waits for another connection's lock (the service's own engine, a replay).
_BUSY_TIMEOUT_MS = 5000
_COLUMNS = (
    *("id", "customer_id", "external_customer_id", "model_version", "probability"),
    *("will_churn", "cached", "latency_ms", "created_at", "challenger_version"),
    *("challenger_probability", "features"),
)
_INSERT = (
    f"INSERT INTO predictions ({', '.join(_COLUMNS)}) "  # noqa: S608 - our own column names
    "VALUES (?, (SELECT id FROM customers WHERE external_id = ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO NOTHING"
)
# SQLAlchemy's storage format of a DateTime on SQLite (always six digits of microseconds).
_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"


def _parameters(rows: Sequence[LoggedPrediction]) -> list[tuple[object, ...]]:
    """The rows in `_INSERT`'s order: the external id twice (the customer lookup, the column),
    created_at as SQLAlchemy's text, formatted once per distinct time (the rows of a batch
    request share theirs; strftime is about 2 us)."""
    texts: dict[float, str] = {}

    def text(created: float) -> str:
        if (known := texts.get(created)) is None:
            known = texts[created] = datetime.fromtimestamp(created, UTC).strftime(_SQLITE_DATETIME)
        return known

    return [(row[0], row[1], *row[1:7], text(row[7]), *row[8:]) for row in rows]


class SqliteThreadSink:
    """Writes batches to the `predictions` table of the SQLite file at `path`, each in a
    worker thread on a connection of its own (opening one costs about 0.1 ms, a batch holds up
    to thousands of rows)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def write(self, rows: Sequence[LoggedPrediction]) -> int:
        """Insert `rows` in one transaction, skipping ids already stored; the number inserted."""
        if not rows:
            return 0
        return await asyncio.to_thread(self._write, rows)

    def _write(self, rows: Sequence[LoggedPrediction]) -> int:
        parameters = _parameters(rows)
        connection = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000.0)
        try:
            with connection:  # one transaction: committed, or rolled back on an error
                inserted = connection.executemany(_INSERT, parameters).rowcount
        finally:
            connection.close()
        return int(inserted)
