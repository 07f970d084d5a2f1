"""PredictionLogWriter against an in-memory sink: batching, retries, bound, spill, replay, close."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from churn_mlops.core.protocols import PredictionRecorder
from churn_mlops.db.prediction_log import (
    LoggedPrediction,
    PredictionLogStats,
    PredictionLogWriter,
    append_spill,
    identify,
)
from tests.unit.db.prediction_log.conftest import MemorySink, WriterFactory, record_rows, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


def _stored_customers(sink: MemorySink) -> list[str | None]:
    return sorted((row.external_customer_id for row in sink.rows.values()), key=str)


def _spill_files(spill_path: Path) -> list[Path]:
    return (
        sorted(spill_path.parent.glob(spill_path.name + "*")) if spill_path.parent.exists() else []
    )


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def test_the_writer_has_the_recorders_methods() -> None:
    for name in ("record", "record_many"):
        assert inspect.signature(getattr(PredictionLogWriter, name)) == inspect.signature(
            getattr(PredictionRecorder, name)
        )


async def test_record_buffers_without_writing(make_writer: WriterFactory, sink: MemorySink) -> None:
    writer = make_writer(flush_interval=60)
    record_rows(writer, 3)
    stats = writer.stats()
    assert (stats.rows_recorded, stats.queue_depth) == (3, 3)
    assert sink.attempts == []


async def test_flushes_full_batches_without_waiting_for_the_interval(
    make_writer: WriterFactory, sink: MemorySink
) -> None:
    writer = make_writer(flush_interval=60, batch_rows=10, max_write_rows=10)
    await writer.start()
    record_rows(writer, 25)
    # The writer counts a write once the sink has returned: wait for both.
    await wait_until(lambda: len(sink.rows) == 20 and writer.stats().queue_depth == 5)
    assert [len(ids) for ids in sink.attempts] == [10, 10]


async def test_a_backlog_is_written_in_few_large_writes(
    make_writer: WriterFactory, sink: MemorySink
) -> None:
    # Batch requests add hundreds of rows at once: a full batch takes what waits, up to
    # max_write_rows, instead of batch_rows at a time.
    writer = make_writer(flush_interval=60, batch_rows=10, max_write_rows=1_000, max_buffer=10_000)
    record_rows(writer, 2_500)
    await writer.start()
    await wait_until(lambda: len(sink.rows) == 2_500)
    assert [len(ids) for ids in sink.attempts] == [1_000, 1_000, 500]


class SlowSink(MemorySink):
    """A database that takes 0.1 s per statement, however many rows it holds."""

    async def write(self, rows: Sequence[LoggedPrediction]) -> int:
        await asyncio.sleep(0.1)
        return await super().write(rows)


async def test_close_writes_a_large_backlog_to_a_slow_database_within_its_budget(
    make_writer: WriterFactory, tmp_path: Path
) -> None:
    # Finding 6 of issue 16: at 500 rows per write, 25,000 waiting rows need 50 writes (5 s
    # here) and the rest of a 1 s budget went to the spill file; the database was up.
    slow = SlowSink()
    writer = make_writer(
        target=slow, flush_interval=60, batch_rows=500, max_buffer=100_000, shutdown_timeout=1.0
    )
    record_rows(writer, 25_000)
    await writer.close()
    assert len(slow.rows) == 25_000
    assert not writer.spill_path.exists()


async def test_flushes_a_partial_batch_after_the_interval(
    make_writer: WriterFactory, sink: MemorySink
) -> None:
    writer = make_writer(flush_interval=0.02, batch_rows=100)
    await writer.start()
    ids = record_rows(writer, 3)
    await wait_until(lambda: len(sink.rows) == 3)
    assert [len(batch) for batch in sink.attempts] == [3]
    assert _stored_customers(sink) == sorted(ids)
    stored = next(iter(sink.rows.values()))
    assert (stored.model_version, stored.probability, stored.will_churn, stored.cached) == (
        "v1",
        0.25,
        False,
        True,
    )
    assert stored.latency_ms == 1.5


async def test_record_many_buffers_one_row_per_answer(
    make_writer: WriterFactory, sink: MemorySink
) -> None:
    writer = make_writer(flush_interval=0.02)
    await writer.start()
    writer.record_many(
        ["a", None, "b"], [0.1, 0.9, 0.5], [False, True, True], [True, False, False], 2.0, "v2"
    )
    await wait_until(lambda: len(sink.rows) == 3)
    rows = sorted(sink.rows.values(), key=lambda row: row.probability)
    assert [(r.external_customer_id, r.probability, r.will_churn, r.cached) for r in rows] == [
        ("a", 0.1, False, True),
        ("b", 0.5, True, False),
        (None, 0.9, True, False),
    ]
    assert {(r.latency_ms, r.model_version) for r in rows} == {(2.0, "v2")}
    assert writer.stats().rows_recorded == 3


async def test_retries_a_failed_batch_with_the_same_ids(
    make_writer: WriterFactory, sink: MemorySink
) -> None:
    sink.fail("fail", times=2)
    writer = make_writer()
    await writer.start()
    record_rows(writer, 5)
    await wait_until(lambda: len(sink.rows) == 5)
    assert len(sink.attempts) == 3
    assert sink.attempts[0] == sink.attempts[1] == sink.attempts[2]
    stats = writer.stats()
    assert (stats.flush_failures, stats.retries, stats.rows_flushed, stats.flushes) == (2, 2, 5, 1)
    assert stats.outage is False


async def test_retry_after_an_unknown_commit_outcome_writes_no_duplicate(
    make_writer: WriterFactory, sink: MemorySink
) -> None:
    sink.fail("lost_ack", times=1)
    writer = make_writer()
    await writer.start()
    record_rows(writer, 5)
    await wait_until(lambda: writer.stats().rows_flushed == 5)
    assert len(sink.rows) == 5
    assert sink.attempts[0] == sink.attempts[1]
    assert writer.stats().rows_duplicate == 5


async def test_a_hanging_write_times_out_and_is_retried(
    make_writer: WriterFactory, sink: MemorySink
) -> None:
    sink.fail("hang", times=1)
    writer = make_writer(write_timeout=0.05)
    await writer.start()
    record_rows(writer, 4)
    await wait_until(lambda: writer.stats().rows_flushed == 4)
    stats = writer.stats()
    assert len(sink.rows) == 4
    assert (stats.flush_failures, stats.retries, stats.rows_flushed) == (1, 1, 4)


async def test_an_outage_keeps_rows_in_memory_up_to_the_bound(
    make_writer: WriterFactory, sink: MemorySink, spill_path: Path
) -> None:
    sink.fail("fail")
    writer = make_writer(max_buffer=100)
    await writer.start()
    record_rows(writer, 60)
    await wait_until(lambda: writer.stats().flush_failures >= 3)
    stats = writer.stats()
    assert (stats.outage, stats.queue_depth, stats.rows_spilled) == (True, 60, 0)
    assert _spill_files(spill_path) == []


async def test_spills_past_the_bound_and_replays_when_the_database_returns(
    make_writer: WriterFactory, sink: MemorySink, spill_path: Path
) -> None:
    sink.fail("fail")
    writer = make_writer(max_buffer=20, batch_rows=5)
    await writer.start()
    ids = record_rows(writer, 100)
    await wait_until(lambda: writer.stats().queue_depth <= 20 + 5)
    spilled = writer.stats().rows_spilled
    assert spilled >= 100 - 25
    assert len(_lines(spill_path)) == spilled
    assert sink.rows == {}

    sink.fail("ok", times=0)
    await wait_until(
        lambda: (
            writer.stats().rows_flushed + writer.stats().rows_replayed == 100
            and writer.stats().queue_depth == 0
        )
    )
    stats = writer.stats()
    assert len(sink.rows) == 100
    assert _stored_customers(sink) == sorted(ids, key=str)
    assert stats.rows_replayed == spilled
    assert stats.rows_flushed + stats.rows_replayed == 100
    assert stats.outage is False
    await wait_until(lambda: _spill_files(spill_path) == [])


async def test_replays_a_spill_file_left_by_an_earlier_run_on_start(
    make_writer: WriterFactory, sink: MemorySink, spill_path: Path
) -> None:
    earlier = identify([(f"old{n}", "v0", 0.5, True, False, 3.0, 1.7e9 + n) for n in range(12)])
    append_spill(spill_path, earlier[:7])
    append_spill(spill_path, earlier[7:])
    writer = make_writer()
    await writer.start()
    await wait_until(lambda: writer.stats().rows_replayed == 12)
    assert sink.rows == {row.id: row for row in earlier}
    await wait_until(lambda: _spill_files(spill_path) == [])


async def test_a_replay_interrupted_by_a_crash_is_finished_without_duplicates(
    make_writer: WriterFactory, sink: MemorySink, spill_path: Path
) -> None:
    rows = identify([(f"c{n}", "v0", 0.5, True, False, 3.0, 1.7e9 + n) for n in range(30)])
    append_spill(spill_path, rows)
    # A crash after the first chunk was inserted: the renamed file is still there.
    crashed = spill_path.with_name(spill_path.name + ".replay-crashed")
    os.rename(spill_path, crashed)
    for row in rows[:10]:
        sink.rows[row.id] = row
    writer = make_writer(batch_rows=10)
    await writer.start()
    await wait_until(lambda: writer.stats().rows_replayed == 30)
    assert sink.rows == {row.id: row for row in rows}
    assert writer.stats().rows_duplicate == 10
    await wait_until(lambda: _spill_files(spill_path) == [])


async def test_a_failed_replay_keeps_its_file_for_the_next_attempt(
    make_writer: WriterFactory, sink: MemorySink, spill_path: Path
) -> None:
    rows = identify([(f"c{n}", "v0", 0.5, True, False, 3.0, 1.7e9 + n) for n in range(20)])
    append_spill(spill_path, rows)
    sink.fail("fail", times=3)
    writer = make_writer(batch_rows=10)
    await writer.start()
    await wait_until(lambda: len(sink.rows) == 20)
    assert sink.rows == {row.id: row for row in rows}
    assert writer.stats().flush_failures == 3
    await wait_until(lambda: _spill_files(spill_path) == [])


async def test_a_torn_line_is_skipped_and_the_rest_replayed(
    make_writer: WriterFactory, sink: MemorySink, spill_path: Path
) -> None:
    rows = identify([(f"c{n}", "v0", 0.5, True, False, 3.0, 1.7e9 + n) for n in range(4)])
    append_spill(spill_path, rows[:2])
    with spill_path.open("ab") as spill:
        spill.write(
            b'["0190c8a1',
        )  # a write a crash cut short
    append_spill(spill_path, rows[2:])
    writer = make_writer()
    await writer.start()
    await wait_until(lambda: len(sink.rows) == 4)
    assert sink.rows == {row.id: row for row in rows}
    await wait_until(lambda: writer.stats().spill_unreadable_lines == 1)


async def test_close_writes_every_buffered_row(
    make_writer: WriterFactory, sink: MemorySink, spill_path: Path
) -> None:
    writer = make_writer(flush_interval=60, batch_rows=8)
    await writer.start()
    ids = record_rows(writer, 30)
    await writer.close()
    assert _stored_customers(sink) == sorted(ids)
    assert writer.stats().queue_depth == 0
    assert _spill_files(spill_path) == []


async def test_close_spills_what_a_hanging_database_does_not_take(
    make_writer: WriterFactory, sink: MemorySink, spill_path: Path
) -> None:
    sink.fail("hang")
    writer = make_writer(shutdown_timeout=0.2, write_timeout=0.1)
    await writer.start()
    ids = record_rows(writer, 25)
    await writer.close()
    assert sink.rows == {}
    assert writer.stats().rows_spilled == 25
    assert writer.stats().queue_depth == 0
    spilled_ids = {orjson.loads(line)[0] for line in _lines(spill_path)}
    # The batch the hanging database never acknowledged is spilled with the ids it was sent with.
    assert set(sink.attempts[0]) <= spilled_ids

    sink.fail("ok", times=0)
    successor = make_writer()
    await successor.start()
    await wait_until(lambda: len(sink.rows) == 25)
    assert _stored_customers(sink) == sorted(ids)
    assert set(sink.rows) == spilled_ids


async def test_close_without_start_writes_the_buffer(
    make_writer: WriterFactory, sink: MemorySink
) -> None:
    writer = make_writer()
    record_rows(writer, 3)
    await writer.close()
    assert len(sink.rows) == 3


async def test_an_outage_is_logged_once_and_its_end_once(
    make_writer: WriterFactory, sink: MemorySink, caplog: pytest.LogCaptureFixture
) -> None:
    sink.fail("fail")
    writer = make_writer()
    with caplog.at_level(logging.INFO, logger="churn_mlops.db.prediction_log"):
        await writer.start()
        record_rows(writer, 30)
        await wait_until(lambda: writer.stats().flush_failures >= 5)
        sink.fail("ok", times=0)
        await wait_until(lambda: len(sink.rows) == 30)
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in messages] == [logging.WARNING, logging.INFO]
    assert "ConnectionError" in messages[0][1]
    assert "back after" in messages[1][1]


async def test_stats_add_up_after_an_outage_with_spill(
    make_writer: WriterFactory, sink: MemorySink
) -> None:
    sink.fail("fail")
    writer = make_writer(max_buffer=10, batch_rows=5)
    await writer.start()
    record_rows(writer, 40)
    await wait_until(lambda: writer.stats().rows_spilled > 0)
    sink.fail("ok", times=0)
    # The writer counts a write once the sink has it: wait for the counts, not the rows.
    await wait_until(
        lambda: (
            len(sink.rows) == 40
            and writer.stats().queue_depth == 0
            and writer.stats().rows_flushed + writer.stats().rows_replayed == 40
        )
    )
    stats = writer.stats()
    assert isinstance(stats, PredictionLogStats)
    assert stats.rows_recorded == 40
    assert stats.rows_flushed + stats.rows_replayed == 40
    assert stats.rows_replayed == stats.rows_spilled
    assert stats.retries >= 1
    assert stats.flush_failures >= 1
    # The failed batch, written once the database is back, and at least one replay.
    assert stats.flushes >= 2
    assert stats.rows_duplicate == 0


async def test_close_closes_the_sink_after_writing_what_is_left(
    make_writer: WriterFactory, sink: MemorySink
) -> None:
    writer = make_writer(flush_interval=60)
    await writer.start()
    record_rows(writer, 3)

    await writer.close()

    assert len(sink.rows) == 3
    assert sink.closed


class StuckClosingSink(MemorySink):
    """A sink whose close never returns (a write stuck in its thread, say)."""

    async def close(self) -> None:
        await asyncio.Event().wait()


async def test_a_sink_that_does_not_close_is_left_after_its_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from churn_mlops.db.prediction_log.guarded_sink import GuardedSink

    guarded = GuardedSink(StuckClosingSink(), fallback="spilling")
    with caplog.at_level(logging.WARNING, logger="churn_mlops.db.prediction_log"):
        await asyncio.wait_for(guarded.close(budget=0.05), timeout=5)
    assert "did not close within 0.05 s" in caplog.text
