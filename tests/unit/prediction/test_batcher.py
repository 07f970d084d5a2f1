"""MicroBatcher and ModelRunner behaviour, with real concurrency and a recording model."""

from __future__ import annotations

import asyncio
import math
import threading

import numpy as np
import pytest

from churn_mlops.model.features import FloatMatrix
from churn_mlops.model.inference import Probabilities
from churn_mlops.prediction.batcher import MicroBatcher, ModelRunner, Overloaded

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]


class RecordingModel:
    """Scores a row as its first value / 1000, records every call, fails on poison rows."""

    def __init__(self) -> None:
        self.calls: list[list[float]] = []
        self.threads: list[str] = []

    def __call__(self, rows: FloatMatrix) -> Probabilities:
        self.calls.append(rows[:, 0].tolist())
        self.threads.append(threading.current_thread().name)
        if (rows[:, 0] < 0).any():
            raise ValueError("poison row")
        return rows[:, 0].astype(np.float64) / 1000.0


def _row(value: float) -> FloatMatrix:
    return np.full((1, 19), value, dtype=np.float32)


def _batcher(model: RecordingModel, **options: float) -> MicroBatcher:
    offload = int(options.pop("offload_min_rows", 10_000))
    return MicroBatcher(ModelRunner(model, offload_min_rows=offload), **options)  # type: ignore[arg-type]


async def test_concurrent_requests_share_model_calls_and_get_their_own_answer() -> None:
    model = RecordingModel()
    batcher = _batcher(model, max_batch_size=32)
    values = list(range(200))
    results = await asyncio.gather(*(batcher.predict(_row(v)) for v in values))
    assert results == pytest.approx([v / 1000 for v in values])
    assert len(model.calls) <= math.ceil(len(values) / 32) + 1
    assert sorted(v for call in model.calls for v in call) == values
    assert max(len(call) for call in model.calls) <= 32


async def test_a_lone_request_waits_for_no_timer() -> None:
    model = RecordingModel()
    batcher = _batcher(model, max_wait=0.0)
    assert await asyncio.wait_for(batcher.predict(_row(7)), timeout=1) == pytest.approx(0.007)
    assert model.calls == [[7.0]]


async def test_flush_splits_what_is_pending_into_max_batch_size_calls() -> None:
    model = RecordingModel()
    batcher = _batcher(model, max_batch_size=8, max_wait=60.0)
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.predict(_row(v)) for v in range(20))), timeout=5
    )
    assert results == pytest.approx([v / 1000 for v in range(20)])
    assert [len(call) for call in model.calls] == [8, 8, 4]


async def test_full_batch_flushes_before_max_wait() -> None:
    model = RecordingModel()
    batcher = _batcher(model, max_batch_size=4, max_wait=60.0)
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.predict(_row(v)) for v in range(4))), timeout=5
    )
    assert results == pytest.approx([0, 0.001, 0.002, 0.003])
    assert model.calls == [[0, 1, 2, 3]]


async def test_max_wait_gathers_requests_from_later_loop_turns() -> None:
    model = RecordingModel()
    batcher = _batcher(model, max_batch_size=32, max_wait=0.05)
    first = asyncio.ensure_future(batcher.predict(_row(1)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    second = asyncio.ensure_future(batcher.predict(_row(2)))
    assert await asyncio.gather(first, second) == pytest.approx([0.001, 0.002])
    assert model.calls == [[1.0, 2.0]]


async def test_a_failing_batch_fails_only_its_own_requests() -> None:
    model = RecordingModel()
    batcher = _batcher(model, max_batch_size=4)
    poisoned = [batcher.predict(_row(v)) for v in (1, 2, -1, 3)]
    first = await asyncio.gather(*poisoned, return_exceptions=True)
    healthy = await asyncio.gather(*(batcher.predict(_row(v)) for v in (4, 5)))
    assert all(isinstance(result, ValueError) for result in first)
    assert healthy == pytest.approx([0.004, 0.005])
    assert batcher.stats.failed_batches == 1


async def test_cancelled_requests_are_skipped() -> None:
    model = RecordingModel()
    batcher = _batcher(model, max_wait=60.0, max_batch_size=32)
    keep = asyncio.ensure_future(batcher.predict(_row(1)))
    drop = asyncio.ensure_future(batcher.predict(_row(2)))
    await asyncio.sleep(0)
    drop.cancel()
    await asyncio.sleep(0)
    await batcher.close()
    assert await keep == pytest.approx(0.001)
    assert drop.cancelled()
    assert model.calls == [[1.0]]
    assert batcher.stats.cancelled == 1


async def test_full_queue_refuses_at_once_with_retry_after() -> None:
    model = RecordingModel()
    batcher = _batcher(model, max_wait=60.0, max_batch_size=100, max_queue=3)
    waiting = [asyncio.ensure_future(batcher.predict(_row(v))) for v in range(3)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as refusal:
        batcher.submit(_row(99))
    assert refusal.value.status == 503
    assert refusal.value.headers == {"Retry-After": "1"}
    assert batcher.stats.shed == 1
    await batcher.close()
    assert await asyncio.gather(*waiting) == pytest.approx([0, 0.001, 0.002])


async def test_a_saturated_turn_sheds_what_arrives_after_the_delay_bound() -> None:
    model = RecordingModel()
    now = [100.0]
    runner = ModelRunner(model, offload_min_rows=10_000)
    batcher = MicroBatcher(
        runner, max_wait=5.0, max_batch_size=100, max_queue_delay=0.05, clock=lambda: now[0]
    )
    first = asyncio.ensure_future(batcher.predict(_row(1)))
    await asyncio.sleep(0)
    now[0] += 5.04  # within the intended wait plus the tolerated delay
    second = asyncio.ensure_future(batcher.predict(_row(2)))
    await asyncio.sleep(0)
    now[0] += 0.02  # the oldest request has now waited 5.06 s: 60 ms past its batching wait
    with pytest.raises(Overloaded):
        batcher.submit(_row(3))
    await batcher.close()
    assert await asyncio.gather(first, second) == pytest.approx([0.001, 0.002])
    assert batcher.stats.shed == 1


async def test_shedding_ends_with_the_turn_that_caused_it() -> None:
    model = RecordingModel()
    now = [0.0]
    batcher = MicroBatcher(
        ModelRunner(model, offload_min_rows=10_000), max_queue_delay=0.05, clock=lambda: now[0]
    )
    assert await batcher.predict(_row(1)) == pytest.approx(0.001)
    now[0] += 10.0  # long after: nothing is waiting, so nothing has waited too long
    assert await batcher.predict(_row(2)) == pytest.approx(0.002)
    assert batcher.stats.shed == 0


async def test_close_answers_every_queued_request_then_refuses_new_ones() -> None:
    model = RecordingModel()
    batcher = _batcher(model, max_wait=60.0, max_batch_size=100)
    waiting = [asyncio.ensure_future(batcher.predict(_row(v))) for v in range(20)]
    await asyncio.sleep(0)
    assert batcher.queued == 20
    await batcher.close()
    assert batcher.queued == 0
    assert await asyncio.gather(*waiting) == pytest.approx([v / 1000 for v in range(20)])
    with pytest.raises(Overloaded, match="shutting down"):
        batcher.submit(_row(1))


async def test_large_batches_run_off_the_event_loop() -> None:
    model = RecordingModel()
    batcher = _batcher(model, max_batch_size=8, offload_min_rows=8)
    results = await asyncio.gather(*(batcher.predict(_row(v)) for v in range(10)))
    assert results == pytest.approx([v / 1000 for v in range(10)])
    thread_by_size = {
        len(call): thread for call, thread in zip(model.calls, model.threads, strict=True)
    }
    assert thread_by_size[8].startswith("churn-model")
    assert thread_by_size[2] == threading.main_thread().name


async def test_close_waits_for_offloaded_batches() -> None:
    model = RecordingModel()
    batcher = _batcher(model, max_batch_size=2, offload_min_rows=2, max_wait=60.0)
    waiting = [asyncio.ensure_future(batcher.predict(_row(v))) for v in range(2)]
    await asyncio.sleep(0)
    await batcher.close()
    assert all(future.done() for future in waiting)
    assert [future.result() for future in waiting] == pytest.approx([0, 0.001])
