"""An in-memory sink with switchable faults, and a writer factory for the unit tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from churn_mlops.db.prediction_log import LoggedPrediction, PredictionLogWriter


class MemorySink:
    """Stores rows by id like `ON CONFLICT (id) DO NOTHING` does.

    `mode`: "ok"; "fail" (raise before storing); "hang" (never answer); "lost_ack" (store,
    then raise: a commit whose outcome the writer cannot know). `failures` > 0 applies the
    fault to that many writes, then heals.
    """

    def __init__(self) -> None:
        self.rows: dict[str, LoggedPrediction] = {}
        self.attempts: list[list[str]] = []
        self.mode = "ok"
        self.failures = -1  # -1: the mode holds until changed
        self.closed = False

    def fail(self, mode: str, times: int = -1) -> None:
        self.mode, self.failures = mode, times

    async def close(self) -> None:
        self.closed = True

    async def write(self, rows: Sequence[LoggedPrediction]) -> int:
        self.attempts.append([row.id for row in rows])
        mode = self.mode
        if self.failures > 0:
            self.failures -= 1
            if self.failures == 0:
                self.mode = "ok"
        if mode == "fail":
            raise ConnectionError("database refused")
        if mode == "hang":
            await asyncio.Event().wait()
        inserted = 0
        for row in rows:
            if row.id not in self.rows:
                self.rows[row.id] = row
                inserted += 1
        if mode == "lost_ack":
            raise ConnectionResetError("connection reset during COMMIT")
        return inserted


WriterFactory = Callable[..., PredictionLogWriter]


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def spill_path(tmp_path: Path) -> Path:
    return tmp_path / "spill" / "prediction-log.jsonl"


@pytest.fixture
async def make_writer(sink: MemorySink, spill_path: Path) -> AsyncIterator[WriterFactory]:
    """Started writers with short intervals; closed after the test if it did not."""
    writers: list[PredictionLogWriter] = []

    def make(target: Any = None, **options: Any) -> PredictionLogWriter:
        settings: dict[str, Any] = {
            "flush_interval": 0.02,
            "batch_rows": 10,
            "max_buffer": 1000,
            "write_timeout": 0.5,
            "retry_initial": 0.01,
            "retry_max": 0.05,
            "shutdown_timeout": 0.5,
        }
        settings.update(options)
        writer = PredictionLogWriter(target or sink, spill_path, **settings)
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        await writer.close()


async def wait_until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll `condition` every few milliseconds; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def record_rows(writer: PredictionLogWriter, count: int, start: int = 0) -> list[str]:
    """Record `count` predictions for customers c<start>..; their customer ids."""
    ids = [f"c{start + n}" for n in range(count)]
    for customer_id in ids:
        writer.record(customer_id, 0.25, False, True, 1.5, "v1")
    return ids
