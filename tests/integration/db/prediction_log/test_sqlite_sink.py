"""The SQLite file's sink: a batch in a few multi-row statements on a connection its thread
keeps, the last statement padded with copies that insert nothing, the connection let go by
`close`.

A statement per row made a batch wait for the GIL once per row while the event loop was busy
(docs/performance.md); the statement count is what these tests hold down, not a time."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from churn_mlops.db import schema
from churn_mlops.db.prediction_log.ids import LoggedPrediction, identify
from churn_mlops.db.prediction_log.sqlite_sink import SqliteThreadSink, _chunks

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
async def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "log.db"
    await asyncio.to_thread(schema.upgrade, f"sqlite:///{path}")
    return path


def _rows(count: int, tag: str) -> list[LoggedPrediction]:
    return identify(
        [
            (f"{tag}-{n}", "v9", n / (count + 1), False, False, 0.5, 1_790_000_000.0 + n)
            for n in range(count)
        ]
    )


def _stored(path: Path) -> list[tuple[str, float]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT external_customer_id, probability FROM predictions ORDER BY probability"
        ).fetchall()


def _open_by_this_process(path: Path) -> bool:
    return any(
        os.path.realpath(f"/proc/self/fd/{fd}") == str(path.resolve())
        for fd in os.listdir("/proc/self/fd")
        if os.path.exists(f"/proc/self/fd/{fd}")
    )


@pytest.mark.parametrize("count", [1, 7, 8, 9, 64, 65, 512, 513, 1_100])
async def test_every_batch_size_is_stored_once_whatever_the_padding(
    log_file: Path, count: int
) -> None:
    sink = SqliteThreadSink(log_file)
    rows = _rows(count, "size")
    try:
        assert await sink.write(rows) == count
        assert await sink.write(rows) == 0  # a retried batch adds nothing
    finally:
        await sink.close()
    stored = _stored(log_file)
    assert len(stored) == count
    assert stored == [(row.external_customer_id, row.probability) for row in rows]


async def test_a_batch_of_a_thousand_rows_is_two_statements(log_file: Path) -> None:
    sink = SqliteThreadSink(log_file)
    await sink.write(_rows(1, "first"))  # opens the thread's connection
    statements: list[str] = []
    connection = sink._connection
    assert connection is not None
    # The connection belongs to the sink's thread: trace it from there.
    await asyncio.get_running_loop().run_in_executor(
        sink._executor, connection.set_trace_callback, statements.append
    )
    try:
        assert await sink.write(_rows(1_000, "many")) == 1_000
    finally:
        await sink.close()
    inserts = [text for text in statements if text.startswith("INSERT")]
    assert len(inserts) == 2  # 512 rows, then 488 padded to 512 (not 1,000 statements)


async def test_close_lets_go_of_the_file_and_a_later_write_opens_it_again(
    log_file: Path,
) -> None:
    sink = SqliteThreadSink(log_file)
    await sink.write(_rows(3, "before"))
    assert _open_by_this_process(log_file)

    await sink.close()
    assert not _open_by_this_process(log_file)

    assert await sink.write(_rows(2, "after")) == 2
    await sink.close()
    assert len(_stored(log_file)) == 5


async def test_rows_with_and_without_a_challenger_or_features_keep_every_value_and_customer(
    log_file: Path,
) -> None:
    names = ['q "quoted", {braced}', "b\\slash", "é-東京"]
    with sqlite3.connect(log_file) as connection:
        for name in names:
            connection.execute(
                "INSERT INTO customers (external_id, features, schema_sha256, created_at, "
                "updated_at) VALUES (?, '{}', 'x', '2026-12-07 00:00:00', '2026-12-07 00:00:00')",
                (name,),
            )
        keys = dict(connection.execute("SELECT external_id, id FROM customers").fetchall())
    recorded = [
        (names[0], "v9", 0.25, False, False, 0.5, 1.79e9),
        (names[1], "v9", 0.5, True, True, 1.5, 1.79e9, "vC", 0.75),
        (names[2], "v9", 0.75, True, False, 2.5, 1.79e9, None, None, b"\x01\x02"),
        ("unknown", "v9", 1.0, True, False, 3.5, 1.79e9),
        (None, "v9", 0.0, False, False, 4.5, 1.79e9),
    ]
    rows = identify([(*row, *(None,) * (10 - len(row))) for row in recorded])
    sink = SqliteThreadSink(log_file)
    try:
        assert await sink.write(rows) == len(rows)
    finally:
        await sink.close()

    with sqlite3.connect(log_file) as connection:
        stored = connection.execute(
            "SELECT id, customer_id, external_customer_id, probability, will_churn, cached, "
            "latency_ms, challenger_version, challenger_probability, features FROM predictions"
        ).fetchall()
    assert sorted(stored, key=lambda row: row[6]) == [
        (
            row.id,
            keys.get(row.external_customer_id or ""),
            row.external_customer_id,
            row.probability,
            int(row.will_churn),
            int(row.cached),
            row.latency_ms,
            row.challenger_version,
            row.challenger_probability,
            row.features,
        )
        for row in rows
    ]


def test_a_smaller_variable_limit_gives_smaller_statements() -> None:
    # An older SQLite may bind at most 999 values: 83 rows of 12 columns.
    rows: list[tuple[object, ...]] = [(n,) * 12 for n in range(200)]
    chunks = _chunks(rows, (83, 64, 8))
    assert [len(chunk) // 12 for chunk in chunks] == [83, 83, 64]
    flat = [value for chunk in chunks for value in chunk[::12]]
    assert flat[:200] == list(range(200))
    assert set(flat[200:]) == {199}  # the padding repeats the last row
