"""PredictionCache without Redis: L1, batch lookups, stats, clearing and closing, through the
calls the pipeline makes (`lookup`, `resolve`, `get_or_compute_many`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial

import numpy as np
import pytest

from churn_mlops.cache import ClearResult, PredictionCache
from tests.fixtures.cache import predict, store_answers
from tests.unit.cache.conftest import CountingModel, FakeClock, row_key, value_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]


async def test_a_computed_answer_is_then_an_l1_hit() -> None:
    cache = PredictionCache("v1")
    key = row_key(cache, 1.0)
    model = CountingModel([key])
    first = await predict(cache, key, lambda: model.one(key))
    second = await predict(cache, key, lambda: model.one(key))
    assert (first, second) == ((model.answer(key), False), (model.answer(key), True))
    assert model.single_calls == 1
    assert cache.lookup(key) == model.answer(key)


async def test_distinct_concurrent_misses_each_get_their_own_answer() -> None:
    cache = PredictionCache("v1")
    keys = [row_key(cache, float(v)) for v in range(50)]
    model = CountingModel(keys)
    results = await asyncio.gather(*(predict(cache, key, partial(model.one, key)) for key in keys))
    assert [value for value, _ in results] == [model.answer(key) for key in keys]
    assert model.single_calls == 50


async def test_batch_serves_hits_and_computes_distinct_misses_in_one_call() -> None:
    cache = PredictionCache("v1")
    keys = [row_key(cache, float(v)) for v in (1, 2, 3, 2, 4, 1)]
    model = CountingModel(keys)
    await store_answers(cache, [(keys[0], 0.125)])
    values, cached = await cache.get_or_compute_many(keys, model.many)
    assert model.calls == [[1, 2, 4]]
    assert values == [0.125, *(model.answer(keys[i]) for i in (1, 2, 3, 4)), 0.125]
    assert cached == [True, False, False, False, False, True]
    values_again, cached_again = await cache.get_or_compute_many(keys, model.many)
    assert values_again == values
    assert cached_again == [True] * 6
    assert len(model.calls) == 1


async def test_a_batch_computation_returning_the_wrong_count_is_an_error() -> None:
    cache = PredictionCache("v1")
    keys = [row_key(cache, float(v)) for v in range(3)]

    async def short(indices: list[int]) -> list[float]:
        return [0.5]

    with pytest.raises(ValueError, match="1 results for 3 rows"):
        await cache.get_or_compute_many(keys, short)


async def test_a_probability_outside_0_1_is_served_but_not_cached() -> None:
    cache = PredictionCache("v1")
    key = row_key(cache, 1.0)
    assert await predict(cache, key, lambda: value_of(float("nan"))) == (
        pytest.approx(float("nan"), nan_ok=True),
        False,
    )
    assert cache.lookup(key) is None
    await store_answers(cache, [(key, 1.5)])
    assert cache.lookup(key) is None
    assert cache.stats().uncacheable == 2


async def test_l1_entries_expire_and_are_computed_again(clock: FakeClock) -> None:
    cache = PredictionCache("v1", l1_ttl_seconds=60, clock=clock)
    key = row_key(cache, 1.0)
    model = CountingModel([key])
    await predict(cache, key, lambda: model.one(key))
    clock.advance(61)
    assert await predict(cache, key, lambda: model.one(key)) == (model.answer(key), False)
    assert model.single_calls == 2


async def test_numpy_results_are_returned_as_python_floats() -> None:
    cache = PredictionCache("v1")
    keys = [row_key(cache, 1.0), row_key(cache, 2.0)]

    async def numpy_model(indices: list[int]) -> Sequence[float]:
        return np.array([0.25, 0.75])[indices]  # type: ignore[return-value]

    values, _ = await cache.get_or_compute_many(keys, numpy_model)
    assert [type(value) for value in values] == [float, float]


async def test_stats_report_hits_misses_and_hit_rate_without_l2() -> None:
    cache = PredictionCache("v1", l1_size=10)
    key = row_key(cache, 1.0)
    await predict(cache, key, lambda: value_of(0.5))
    await predict(cache, key, lambda: value_of(0.5))
    await predict(cache, key, lambda: value_of(0.5))
    stats = cache.stats()
    assert (stats.l1.hits, stats.l1.misses, stats.l1.size, stats.l1.capacity) == (2, 1, 1, 10)
    assert stats.hit_rate == pytest.approx(2 / 3)
    assert stats.l2.enabled is False
    assert stats.l2.breaker_state is None
    assert stats.as_dict()["l1"]["hits"] == 2


async def test_clear_without_l2_empties_l1() -> None:
    cache = PredictionCache("v1")
    await store_answers(cache, [(row_key(cache, 1.0), 0.1), (row_key(cache, 2.0), 0.2)])
    assert await cache.clear() == ClearResult(l1_removed=2, l2_removed=None)
    assert cache.lookup(row_key(cache, 1.0)) is None


async def test_close_answers_what_is_queued() -> None:
    cache = PredictionCache("v1")
    key = row_key(cache, 1.0)
    lookup = asyncio.create_task(predict(cache, key, lambda: value_of(0.5)))
    await asyncio.sleep(0)
    await cache.close()
    assert await lookup == (0.5, False)
