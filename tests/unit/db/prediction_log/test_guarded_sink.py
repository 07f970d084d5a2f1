"""GuardedSink: writes bounded by a budget, failures counted as one outage, logged at each end."""

from __future__ import annotations

import logging

import pytest

from churn_mlops.db.prediction_log.guarded_sink import GuardedSink
from churn_mlops.db.prediction_log.ids import LoggedPrediction, identify
from tests.unit.db.prediction_log.conftest import MemorySink

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


def _batch(count: int = 3) -> list[LoggedPrediction]:
    return identify([(f"c{n}", "v1", 0.5, False, True, 1.0, 1.7e9 + n) for n in range(count)])


async def test_a_write_without_an_answer_within_its_budget_fails(sink: MemorySink) -> None:
    sink.fail("hang")
    guarded = GuardedSink(sink, fallback="buffering")
    assert await guarded.write(_batch(), budget=0.05) is False
    assert (guarded.failures, guarded.flushes, guarded.outage) == (1, 0, True)


async def test_a_successful_write_ends_the_outage(sink: MemorySink) -> None:
    sink.fail("fail", times=2)
    guarded = GuardedSink(sink, fallback="buffering")
    batch = _batch()
    assert await guarded.write(batch, budget=1.0) is False
    assert await guarded.write(batch, budget=1.0) is False
    assert await guarded.write(batch, budget=1.0) is True
    assert (guarded.failures, guarded.flushes, guarded.outage) == (2, 1, False)


async def test_rows_the_sink_already_had_count_as_duplicates(sink: MemorySink) -> None:
    guarded = GuardedSink(sink, fallback="buffering")
    batch = _batch(4)
    assert await guarded.write(batch[:1], budget=1.0)
    assert await guarded.write(batch, budget=1.0)
    assert (guarded.flushes, guarded.duplicates) == (2, 1)


async def test_an_outage_is_logged_at_its_start_and_its_end_with_the_rows_spilled_in_it(
    sink: MemorySink, caplog: pytest.LogCaptureFixture
) -> None:
    sink.fail("fail", times=3)
    guarded = GuardedSink(sink, fallback="spilling to the file")
    guarded.spilled(5)  # before the outage: not part of it
    with caplog.at_level(logging.INFO, logger="churn_mlops.db.prediction_log"):
        for _ in range(3):
            assert not await guarded.write(_batch(), budget=1.0)
            guarded.spilled(2)
        assert await guarded.write(_batch(), budget=1.0)
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in messages] == [logging.WARNING, logging.INFO]
    assert messages[0][1] == (
        "prediction log: database unavailable (ConnectionError: database refused); "
        "spilling to the file"
    )
    assert "(3 failed writes, 6 rows spilled)" in messages[1][1]
