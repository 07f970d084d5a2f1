"""Single-flight without Redis: lookups of one key that overlap share one computation, through
the calls the pipeline makes (`lookup`, `resolve`, `get_or_compute_many`), with real concurrency."""

from __future__ import annotations

import asyncio

import pytest

from churn_mlops.cache import PredictionCache
from tests.fixtures.cache import predict
from tests.unit.cache.conftest import CountingModel, row_key, value_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]


async def test_200_identical_cold_requests_cost_one_computation() -> None:
    cache = PredictionCache("v1")
    key = row_key(cache, 1.0)
    model = CountingModel([key])
    results = await asyncio.gather(
        *(predict(cache, key, lambda: model.one(key)) for _ in range(200))
    )
    assert model.single_calls == 1
    assert results == [(CountingModel.answer(key), False)] * 200
    assert cache.stats().joined == 199
    assert cache.stats().computed == 1


async def test_a_failed_computation_reaches_every_waiter_and_caches_nothing() -> None:
    cache = PredictionCache("v1")
    key = row_key(cache, 1.0)
    calls = 0

    async def failing() -> float:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise RuntimeError("model down")

    results = await asyncio.gather(
        *(predict(cache, key, failing) for _ in range(20)), return_exceptions=True
    )
    assert calls == 1
    assert all(isinstance(r, RuntimeError) and str(r) == "model down" for r in results)
    assert cache.lookup(key) is None
    assert await predict(cache, key, lambda: value_of(0.5)) == (0.5, False)


async def test_a_computation_that_raises_before_awaiting_fails_only_its_own_key() -> None:
    cache = PredictionCache("v1")
    good, bad = row_key(cache, 1.0), row_key(cache, 2.0)

    def broken() -> asyncio.Future[float]:
        raise ValueError("bad row")

    results = await asyncio.gather(
        predict(cache, good, lambda: value_of(0.25)),
        predict(cache, bad, broken),
        return_exceptions=True,
    )
    assert results[0] == (0.25, False)
    assert isinstance(results[1], ValueError)


async def test_a_cancelled_waiter_cancels_neither_the_computation_nor_the_others() -> None:
    cache = PredictionCache("v1")
    key = row_key(cache, 1.0)
    gate = asyncio.Event()
    model = CountingModel([key], gate)
    leader = asyncio.create_task(predict(cache, key, lambda: model.one(key)))
    others = [asyncio.create_task(predict(cache, key, lambda: model.one(key))) for _ in range(5)]
    await asyncio.sleep(0.01)
    others[0].cancel()
    gate.set()
    results = await asyncio.gather(*others[1:])
    assert results == [(model.answer(key), False)] * 4
    assert await leader == (model.answer(key), False)
    assert model.single_calls == 1
    assert others[0].cancelled()
    assert cache.lookup(key) == model.answer(key)


async def test_a_cancelled_leader_hands_its_computation_to_the_waiters_left() -> None:
    cache = PredictionCache("v1")
    key = row_key(cache, 1.0)
    gate = asyncio.Event()
    model = CountingModel([key], gate)
    leader = asyncio.create_task(predict(cache, key, lambda: model.one(key)))
    others = [asyncio.create_task(predict(cache, key, lambda: model.one(key))) for _ in range(5)]
    await asyncio.sleep(0.01)
    leader.cancel()
    others[0].cancel()
    gate.set()
    results = await asyncio.gather(*others[1:])
    assert results == [(model.answer(key), False)] * 4
    assert leader.cancelled()
    assert others[0].cancelled()
    # The leader's computation was cancelled with it (mid-way: the coroutine had started), and
    # started once more for the four waiters left.
    assert model.single_calls == 2
    assert cache.stats().computed == 1
    assert cache.lookup(key) == model.answer(key)


async def test_a_cancelled_leader_costs_no_extra_row_when_compute_is_a_batcher_future() -> None:
    cache = PredictionCache("v1")
    key = row_key(cache, 1.0)
    loop = asyncio.get_running_loop()
    submitted: list[asyncio.Future[float]] = []

    def submit() -> asyncio.Future[float]:  # what MicroBatcher.submit does: queue, return
        future: asyncio.Future[float] = loop.create_future()
        submitted.append(future)
        return future

    leader = asyncio.create_task(predict(cache, key, submit))
    others = [asyncio.create_task(predict(cache, key, submit)) for _ in range(3)]
    await asyncio.sleep(0.01)
    leader.cancel()
    await asyncio.sleep(0.01)
    # The batcher skips a cancelled future when it flushes: only the live one reaches the model.
    live = [future for future in submitted if not future.cancelled()]
    assert len(submitted) == 2
    assert len(live) == 1
    live[0].set_result(0.375)
    assert await asyncio.gather(*others) == [(0.375, False)] * 3
    assert leader.cancelled()
    assert cache.lookup(key) == 0.375


async def test_a_leader_cancelled_after_its_result_came_still_caches_it() -> None:
    cache = PredictionCache("v1")
    key = row_key(cache, 1.0)
    future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    leader = asyncio.create_task(predict(cache, key, lambda: future))
    await asyncio.sleep(0)
    future.set_result(0.625)
    leader.cancel()  # the result is in, the leader has not run yet
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert cache.lookup(key) == 0.625
    assert cache.stats().computed == 1


async def test_batch_waits_for_keys_in_flight_instead_of_computing_them() -> None:
    cache = PredictionCache("v1")
    keys = [row_key(cache, 1.0), row_key(cache, 2.0)]
    gate = asyncio.Event()
    model = CountingModel(keys, gate)
    single = asyncio.create_task(predict(cache, keys[0], lambda: model.one(keys[0])))
    await asyncio.sleep(0.01)
    batch = asyncio.create_task(cache.get_or_compute_many(keys, model.many))
    await asyncio.sleep(0.01)
    gate.set()
    values, cached = await batch
    assert model.calls == [[1]]
    assert model.single_calls == 1
    assert values == [model.answer(keys[0]), model.answer(keys[1])]
    assert cached == [False, False]
    assert (await single)[0] == model.answer(keys[0])


async def test_single_lookup_waits_for_a_batch_in_flight() -> None:
    cache = PredictionCache("v1")
    keys = [row_key(cache, float(v)) for v in range(10)]
    gate = asyncio.Event()
    model = CountingModel(keys, gate)
    batch = asyncio.create_task(cache.get_or_compute_many(keys, model.many))
    await asyncio.sleep(0.01)
    single = asyncio.create_task(predict(cache, keys[3], lambda: model.one(keys[3])))
    await asyncio.sleep(0.01)
    gate.set()
    assert await single == (model.answer(keys[3]), False)
    assert model.single_calls == 0
    assert (await batch)[0][3] == model.answer(keys[3])


async def test_a_failed_batch_computation_raises_and_caches_nothing() -> None:
    cache = PredictionCache("v1")
    keys = [row_key(cache, float(v)) for v in range(3)]
    gate = asyncio.Event()

    async def failing(indices: list[int]) -> list[float]:
        await gate.wait()
        raise RuntimeError("model down")

    batch = asyncio.create_task(cache.get_or_compute_many(keys, failing))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(predict(cache, keys[1], lambda: value_of(0.5)))
    await asyncio.sleep(0.01)
    gate.set()
    with pytest.raises(RuntimeError, match="model down"):
        await batch
    with pytest.raises(RuntimeError, match="model down"):
        await waiter
    assert [cache.lookup(key) for key in keys] == [None, None, None]


async def test_a_cancelled_batch_caller_still_answers_those_waiting_for_its_keys() -> None:
    cache = PredictionCache("v1")
    keys = [row_key(cache, float(v)) for v in range(3)]
    gate = asyncio.Event()
    model = CountingModel(keys, gate)
    batch = asyncio.create_task(cache.get_or_compute_many(keys, model.many))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(predict(cache, keys[2], lambda: model.one(keys[2])))
    await asyncio.sleep(0.01)
    batch.cancel()
    gate.set()
    assert await waiter == (model.answer(keys[2]), False)
    assert batch.cancelled()
