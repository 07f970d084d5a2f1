"""PredictionCache without Redis: L1, single-flight and batch lookups, with real concurrency."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from functools import partial

import numpy as np
import pytest

from churn_mlops.cache.tiered import ClearResult, PredictionCache
from tests.unit.cache.conftest import FakeClock

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]


def _key(cache: PredictionCache, value: float) -> bytes:
    return cache.keys.key_for_row(np.full((1, 19), value, dtype=np.float32))


class CountingModel:
    """Answers key k with a probability that depends on k; counts calls and rows."""

    def __init__(self, keys: Sequence[bytes], gate: asyncio.Event | None = None) -> None:
        self.keys = list(keys)
        self.gate = gate
        self.calls: list[list[int]] = []
        self.single_calls = 0

    @staticmethod
    def answer(key: bytes) -> float:
        return int.from_bytes(hashlib.blake2b(key, digest_size=3).digest(), "big") / 0xFFFFFF

    async def one(self, key: bytes) -> float:
        self.single_calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.answer(key)

    async def many(self, indices: list[int]) -> list[float]:
        self.calls.append(indices)
        if self.gate is not None:
            await self.gate.wait()
        return [self.answer(self.keys[index]) for index in indices]


async def test_200_identical_cold_requests_cost_one_computation() -> None:
    cache = PredictionCache("v1")
    key = _key(cache, 1.0)
    model = CountingModel([key])
    results = await asyncio.gather(
        *(cache.get_or_compute(key, lambda: model.one(key)) for _ in range(200))
    )
    assert model.single_calls == 1
    assert results == [(CountingModel.answer(key), False)] * 200
    assert cache.stats().joined == 199
    assert cache.stats().computed == 1


async def test_a_computed_answer_is_then_an_l1_hit() -> None:
    cache = PredictionCache("v1")
    key = _key(cache, 1.0)
    model = CountingModel([key])
    first = await cache.get_or_compute(key, lambda: model.one(key))
    second = await cache.get_or_compute(key, lambda: model.one(key))
    assert (first, second) == ((model.answer(key), False), (model.answer(key), True))
    assert model.single_calls == 1
    assert await cache.get(key) == (model.answer(key), "l1")


async def test_distinct_concurrent_misses_each_get_their_own_answer() -> None:
    cache = PredictionCache("v1")
    keys = [_key(cache, float(v)) for v in range(50)]
    model = CountingModel(keys)
    results = await asyncio.gather(
        *(cache.get_or_compute(key, partial(model.one, key)) for key in keys)
    )
    assert [value for value, _ in results] == [model.answer(key) for key in keys]
    assert model.single_calls == 50


async def test_a_failed_computation_reaches_every_waiter_and_caches_nothing() -> None:
    cache = PredictionCache("v1")
    key = _key(cache, 1.0)
    calls = 0

    async def failing() -> float:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise RuntimeError("model down")

    results = await asyncio.gather(
        *(cache.get_or_compute(key, failing) for _ in range(20)), return_exceptions=True
    )
    assert calls == 1
    assert all(isinstance(r, RuntimeError) and str(r) == "model down" for r in results)
    assert await cache.get(key) is None
    assert await cache.get_or_compute(key, lambda: _value(0.5)) == (0.5, False)


async def test_a_computation_that_raises_before_awaiting_fails_only_its_own_key() -> None:
    cache = PredictionCache("v1")
    good, bad = _key(cache, 1.0), _key(cache, 2.0)

    def broken() -> asyncio.Future[float]:
        raise ValueError("bad row")

    results = await asyncio.gather(
        cache.get_or_compute(good, lambda: _value(0.25)),
        cache.get_or_compute(bad, broken),
        return_exceptions=True,
    )
    assert results[0] == (0.25, False)
    assert isinstance(results[1], ValueError)


async def test_a_cancelled_waiter_cancels_neither_the_computation_nor_the_others() -> None:
    cache = PredictionCache("v1")
    key = _key(cache, 1.0)
    gate = asyncio.Event()
    model = CountingModel([key], gate)
    leader = asyncio.create_task(cache.get_or_compute(key, lambda: model.one(key)))
    others = [
        asyncio.create_task(cache.get_or_compute(key, lambda: model.one(key))) for _ in range(5)
    ]
    await asyncio.sleep(0.01)
    others[0].cancel()
    gate.set()
    results = await asyncio.gather(*others[1:])
    assert results == [(model.answer(key), False)] * 4
    assert await leader == (model.answer(key), False)
    assert model.single_calls == 1
    assert others[0].cancelled()
    assert await cache.get(key) == (model.answer(key), "l1")


async def test_a_cancelled_leader_hands_its_computation_to_the_waiters_left() -> None:
    cache = PredictionCache("v1")
    key = _key(cache, 1.0)
    gate = asyncio.Event()
    model = CountingModel([key], gate)
    leader = asyncio.create_task(cache.get_or_compute(key, lambda: model.one(key)))
    others = [
        asyncio.create_task(cache.get_or_compute(key, lambda: model.one(key))) for _ in range(5)
    ]
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
    assert await cache.get(key) == (model.answer(key), "l1")


async def test_a_cancelled_leader_costs_no_extra_row_when_compute_is_a_batcher_future() -> None:
    cache = PredictionCache("v1")
    key = _key(cache, 1.0)
    loop = asyncio.get_running_loop()
    submitted: list[asyncio.Future[float]] = []

    def submit() -> asyncio.Future[float]:  # what MicroBatcher.submit does: queue, return
        future: asyncio.Future[float] = loop.create_future()
        submitted.append(future)
        return future

    leader = asyncio.create_task(cache.get_or_compute(key, submit))
    others = [asyncio.create_task(cache.get_or_compute(key, submit)) for _ in range(3)]
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
    assert await cache.get(key) == (0.375, "l1")


async def test_a_leader_cancelled_after_its_result_came_still_caches_it() -> None:
    cache = PredictionCache("v1")
    key = _key(cache, 1.0)
    future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    leader = asyncio.create_task(cache.get_or_compute(key, lambda: future))
    await asyncio.sleep(0)
    future.set_result(0.625)
    leader.cancel()  # the result is in, the leader has not run yet
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert await cache.get(key) == (0.625, "l1")
    assert cache.stats().computed == 1


async def test_batch_serves_hits_and_computes_distinct_misses_in_one_call() -> None:
    cache = PredictionCache("v1")
    keys = [_key(cache, float(v)) for v in (1, 2, 3, 2, 4, 1)]
    model = CountingModel(keys)
    cache.put(keys[0], 0.125)
    values, cached = await cache.get_or_compute_many(keys, model.many)
    assert model.calls == [[1, 2, 4]]
    assert values == [0.125, *(model.answer(keys[i]) for i in (1, 2, 3, 4)), 0.125]
    assert cached == [True, False, False, False, False, True]
    values_again, cached_again = await cache.get_or_compute_many(keys, model.many)
    assert values_again == values
    assert cached_again == [True] * 6
    assert len(model.calls) == 1


async def test_batch_waits_for_keys_in_flight_instead_of_computing_them() -> None:
    cache = PredictionCache("v1")
    keys = [_key(cache, 1.0), _key(cache, 2.0)]
    gate = asyncio.Event()
    model = CountingModel(keys, gate)
    single = asyncio.create_task(cache.get_or_compute(keys[0], lambda: model.one(keys[0])))
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
    keys = [_key(cache, float(v)) for v in range(10)]
    gate = asyncio.Event()
    model = CountingModel(keys, gate)
    batch = asyncio.create_task(cache.get_or_compute_many(keys, model.many))
    await asyncio.sleep(0.01)
    single = asyncio.create_task(cache.get_or_compute(keys[3], lambda: model.one(keys[3])))
    await asyncio.sleep(0.01)
    gate.set()
    assert await single == (model.answer(keys[3]), False)
    assert model.single_calls == 0
    assert (await batch)[0][3] == model.answer(keys[3])


async def test_a_failed_batch_computation_raises_and_caches_nothing() -> None:
    cache = PredictionCache("v1")
    keys = [_key(cache, float(v)) for v in range(3)]
    gate = asyncio.Event()

    async def failing(indices: list[int]) -> list[float]:
        await gate.wait()
        raise RuntimeError("model down")

    batch = asyncio.create_task(cache.get_or_compute_many(keys, failing))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(cache.get_or_compute(keys[1], lambda: _value(0.5)))
    await asyncio.sleep(0.01)
    gate.set()
    with pytest.raises(RuntimeError, match="model down"):
        await batch
    with pytest.raises(RuntimeError, match="model down"):
        await waiter
    assert await cache.get_many(keys) == [None, None, None]


async def test_a_batch_computation_returning_the_wrong_count_is_an_error() -> None:
    cache = PredictionCache("v1")
    keys = [_key(cache, float(v)) for v in range(3)]

    async def short(indices: list[int]) -> list[float]:
        return [0.5]

    with pytest.raises(ValueError, match="1 results for 3 rows"):
        await cache.get_or_compute_many(keys, short)


async def test_a_cancelled_batch_caller_still_answers_those_waiting_for_its_keys() -> None:
    cache = PredictionCache("v1")
    keys = [_key(cache, float(v)) for v in range(3)]
    gate = asyncio.Event()
    model = CountingModel(keys, gate)
    batch = asyncio.create_task(cache.get_or_compute_many(keys, model.many))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(cache.get_or_compute(keys[2], lambda: model.one(keys[2])))
    await asyncio.sleep(0.01)
    batch.cancel()
    gate.set()
    assert await waiter == (model.answer(keys[2]), False)
    assert batch.cancelled()


async def test_a_probability_outside_0_1_is_served_but_not_cached() -> None:
    cache = PredictionCache("v1")
    key = _key(cache, 1.0)
    assert await cache.get_or_compute(key, lambda: _value(float("nan"))) == (
        pytest.approx(float("nan"), nan_ok=True),
        False,
    )
    assert await cache.get(key) is None
    cache.put(key, 1.5)
    assert await cache.get(key) is None
    assert cache.stats().uncacheable == 2


async def test_l1_entries_expire_and_are_computed_again(clock: FakeClock) -> None:
    cache = PredictionCache("v1", l1_ttl_seconds=60, clock=clock)
    key = _key(cache, 1.0)
    model = CountingModel([key])
    await cache.get_or_compute(key, lambda: model.one(key))
    clock.advance(61)
    assert await cache.get_or_compute(key, lambda: model.one(key)) == (model.answer(key), False)
    assert model.single_calls == 2


async def test_numpy_results_are_returned_as_python_floats() -> None:
    cache = PredictionCache("v1")
    keys = [_key(cache, 1.0), _key(cache, 2.0)]

    async def numpy_model(indices: list[int]) -> Sequence[float]:
        return np.array([0.25, 0.75])[indices]  # type: ignore[return-value]

    values, _ = await cache.get_or_compute_many(keys, numpy_model)
    assert [type(value) for value in values] == [float, float]


async def test_stats_report_hits_misses_and_hit_rate_without_l2() -> None:
    cache = PredictionCache("v1", l1_size=10)
    key = _key(cache, 1.0)
    await cache.get_or_compute(key, lambda: _value(0.5))
    await cache.get_or_compute(key, lambda: _value(0.5))
    await cache.get_or_compute(key, lambda: _value(0.5))
    stats = cache.stats()
    assert (stats.l1.hits, stats.l1.misses, stats.l1.size, stats.l1.capacity) == (2, 1, 1, 10)
    assert stats.hit_rate == pytest.approx(2 / 3)
    assert stats.l2.enabled is False
    assert stats.l2.breaker_state is None
    assert stats.as_dict()["l1"]["hits"] == 2


async def test_clear_without_l2_empties_l1() -> None:
    cache = PredictionCache("v1")
    cache.put_many([(_key(cache, 1.0), 0.1), (_key(cache, 2.0), 0.2)])
    assert await cache.clear() == ClearResult(l1_removed=2, l2_removed=None)
    assert await cache.get(_key(cache, 1.0)) is None


async def test_close_answers_what_is_queued() -> None:
    cache = PredictionCache("v1")
    lookup = asyncio.create_task(cache.get_or_compute(_key(cache, 1.0), lambda: _value(0.5)))
    await asyncio.sleep(0)
    await cache.close()
    assert await lookup == (0.5, False)


async def _value(value: float) -> float:
    return value
