"""PredictionCache against the real Redis: levels, expiry, versions, refused values, clearing."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable
from functools import partial

import numpy as np
import orjson
import pytest
import redis

from churn_mlops.cache import PredictionCache, ValueCodec
from tests.fixtures.cache import cached_answers, predict, store_answers
from tests.fixtures.cache_values import TEST_CACHE_SECRET, float_bytes, tagged, untagged
from tests.integration.cache.conftest import CacheFactory

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


def _row(value: float) -> np.ndarray:
    return np.full((1, 19), value, dtype=np.float32)


async def _value(value: float) -> float:
    return value


async def test_unknown_key_is_a_miss_at_both_levels(make_cache: CacheFactory) -> None:
    cache = make_cache()
    assert await cached_answers(cache, [cache.keys.key_for_row(_row(1))]) == [None]
    stats = cache.stats()
    assert (stats.l1.misses, stats.l2.misses, stats.l2.hits) == (1, 1, 0)


async def test_computed_answer_reaches_redis_and_another_worker_reads_it(
    make_cache: CacheFactory, raw_redis: redis.Redis
) -> None:
    first, second = make_cache(), make_cache()
    key = first.keys.key_for_row(_row(1))
    assert await predict(first, key, lambda: _value(0.375)) == (0.375, False)
    await first.wait_for_writes()
    name = first.keys.redis_key(key)
    assert raw_redis.get(name) == ValueCodec("v1", TEST_CACHE_SECRET).encode(0.375, name)
    assert await predict(second, key, lambda: _value(0.9)) == (0.375, True)
    assert first.stats().l2.written == 1


async def test_l2_hit_is_promoted_to_l1(make_cache: CacheFactory) -> None:
    writer, reader = make_cache(), make_cache()
    key = writer.keys.key_for_row(_row(1))
    await store_answers(writer, [(key, 0.25)])
    await writer.wait_for_writes()
    assert await cached_answers(reader, [key]) == [0.25]  # L1 was empty: from L2
    assert reader.lookup(key) == 0.25
    stats = reader.stats()
    assert (stats.l2.hits, stats.l1.hits, stats.l1.size) == (1, 1, 1)


async def test_l2_entry_expires_after_its_ttl(
    make_cache: CacheFactory, raw_redis: redis.Redis
) -> None:
    writer, reader = make_cache(l2_ttl_seconds=1), make_cache()
    key = writer.keys.key_for_row(_row(1))
    await store_answers(writer, [(key, 0.25)])
    await writer.wait_for_writes()
    name = writer.keys.redis_key(key)
    assert 0 < raw_redis.pttl(name) <= 1000
    for _ in range(50):  # Redis expires keys lazily or in its 100 ms cycle
        if not raw_redis.exists(name):
            break
        await asyncio.sleep(0.1)
    assert await cached_answers(reader, [key]) == [None]


async def test_model_versions_never_share_answers(make_cache: CacheFactory) -> None:
    old, new = make_cache("v1"), make_cache("v2")
    old_key, new_key = old.keys.key_for_row(_row(1)), new.keys.key_for_row(_row(1))
    assert old.keys.redis_key(old_key) != new.keys.redis_key(new_key)
    await predict(old, old_key, lambda: _value(0.1))
    await old.wait_for_writes()
    assert await predict(new, new_key, lambda: _value(0.2)) == (0.2, False)
    await new.wait_for_writes()
    assert await cached_answers(make_cache("v1"), [old_key]) == [0.1]
    assert await cached_answers(make_cache("v2"), [new_key]) == [0.2]


# Planted by whoever can write to Redis: shapes this service wrote before its values carried a
# tag (JSON naming the version and key digest), values of the tagged layout with a made-up tag,
# and (`tagged`, a holder of the secret) values that are no probability.
@pytest.mark.parametrize(
    "planted",
    [
        lambda name: pickle.dumps({"p": 0.5, "v": "v1"}),
        lambda name: b"\x80\x04garbage",
        lambda name: b'{"p":0.5}',
        lambda name: b"0.5",
        lambda name: orjson.dumps({"p": 0.987654321, "v": "v1", "k": name[-32:]}),
        lambda name: orjson.dumps({"p": -0.0, "v": "v1", "k": name[-32:]}),
        lambda name: untagged(float_bytes(0.987654321)),
        lambda name: untagged(float_bytes(-0.0)),
        lambda name: ValueCodec("v1", b"another secret").encode(0.987654321, name),
        lambda name: ValueCodec("v0", TEST_CACHE_SECRET).encode(0.987654321, name),
        lambda name: tagged(ValueCodec("v1", TEST_CACHE_SECRET), name, float_bytes(2.0)),
        lambda name: tagged(ValueCodec("v1", TEST_CACHE_SECRET), name, float_bytes(float("nan"))),
    ],
    ids=[
        "pickle",
        "binary",
        "foreign-json",
        "bare-number",
        "json-of-the-right-shape",
        "json-negative-zero",
        "made-up-tag",
        "made-up-tag-negative-zero",
        "another-secret",
        "other-version",
        "tagged-out-of-range",
        "tagged-nan",
    ],
)
async def test_planted_value_is_a_counted_miss_then_overwritten(
    make_cache: CacheFactory, raw_redis: redis.Redis, planted: Callable[[str], bytes]
) -> None:
    cache = make_cache()
    key = cache.keys.key_for_row(_row(1))
    name = cache.keys.redis_key(key)
    raw_redis.set(name, planted(name))
    assert await cached_answers(cache, [key]) == [None]
    assert cache.stats().l2.corrupt == 1
    assert await predict(cache, key, lambda: _value(0.5)) == (0.5, False)
    await cache.wait_for_writes()
    assert await cached_answers(make_cache(), [key]) == [0.5]


async def test_value_stored_under_another_key_is_a_counted_miss(
    make_cache: CacheFactory, raw_redis: redis.Redis
) -> None:
    cache = make_cache()
    first, second = cache.keys.key_for_row(_row(1)), cache.keys.key_for_row(_row(2))
    await store_answers(cache, [(first, 0.5)])
    await cache.wait_for_writes()
    raw_redis.set(cache.keys.redis_key(second), raw_redis.get(cache.keys.redis_key(first)))
    reader = make_cache()
    assert await cached_answers(reader, [second]) == [None]
    assert reader.stats().l2.corrupt == 1


async def test_batch_serves_l2_hits_and_computes_the_rest_in_one_call(
    make_cache: CacheFactory,
) -> None:
    writer, reader = make_cache(), make_cache(l2_keys_per_command=7)
    rows = np.random.default_rng(1).random((40, 19), dtype=np.float32)
    keys = writer.keys.keys_for_rows(rows)
    await store_answers(writer, ((key, float(rows[i, 0])) for i, key in enumerate(keys[:25])))
    await writer.wait_for_writes()
    calls: list[list[int]] = []

    async def compute(indices: list[int]) -> list[float]:
        calls.append(indices)
        return [float(rows[i, 0]) for i in indices]

    values, cached = await reader.get_or_compute_many(keys, compute)
    assert calls == [list(range(25, 40))]
    assert values == [float(v) for v in rows[:, 0]]
    assert cached == [True] * 25 + [False] * 15
    assert reader.stats().l2.hits == 25
    await reader.wait_for_writes()
    assert await cached_answers(make_cache(), keys) == [float(v) for v in rows[:, 0]]


async def test_identical_cold_requests_share_one_l2_lookup_and_one_computation(
    make_cache: CacheFactory,
) -> None:
    cache = make_cache()
    key = cache.keys.key_for_row(_row(1))
    computed = 0

    async def compute() -> float:
        nonlocal computed
        computed += 1
        return 0.5

    results = await asyncio.gather(*(predict(cache, key, compute) for _ in range(200)))
    assert results == [(0.5, False)] * 200
    assert computed == 1
    await cache.wait_for_writes()
    assert cache.stats().l2.calls == 2  # one MGET, one write


async def test_concurrent_misses_of_one_turn_share_one_l2_round_trip(
    make_cache: CacheFactory,
) -> None:
    cache = make_cache()
    keys = [cache.keys.key_for_row(_row(v)) for v in range(50)]
    results = await asyncio.gather(
        *(predict(cache, key, partial(_value, i / 100)) for i, key in enumerate(keys))
    )
    assert [value for value, _ in results] == [i / 100 for i in range(50)]
    await cache.wait_for_writes()
    assert cache.stats().l2.calls == 2  # one MGET, one write


async def test_clear_removes_only_this_versions_keys(
    make_cache: CacheFactory, raw_redis: redis.Redis, key_prefix: str
) -> None:
    current, other = make_cache("v1"), make_cache("v2")
    nested = PredictionCache("x", key_prefix=f"{key_prefix}:v1", l2_url=None)
    await store_answers(current, ((current.keys.key_for_row(_row(v)), 0.5) for v in range(30)))
    await store_answers(other, [(other.keys.key_for_row(_row(1)), 0.5)])
    await current.wait_for_writes()
    await other.wait_for_writes()
    nested_key = nested.keys.redis_key_for_row(_row(1))
    raw_redis.set(nested_key, b"not ours")
    result = await current.clear()
    assert (result.l1_removed, result.l2_removed) == (30, 30)
    assert await cached_answers(current, [current.keys.key_for_row(_row(1))]) == [None]
    remaining = sorted(k.decode() for k in raw_redis.scan_iter(match=f"{key_prefix}:*"))
    assert remaining == sorted([other.keys.redis_key_for_row(_row(1)), nested_key])


async def test_an_answer_survives_in_l2_after_l1_evicts_it(make_cache: CacheFactory) -> None:
    cache = make_cache(l1_size=1)
    first, second = cache.keys.key_for_row(_row(1)), cache.keys.key_for_row(_row(2))
    await store_answers(cache, [(first, 0.1)])
    await store_answers(cache, [(second, 0.2)])
    await cache.wait_for_writes()
    assert cache.lookup(first) is None
    assert await cached_answers(cache, [first]) == [0.1]
    assert cache.stats().l1.evictions >= 1


async def test_misses_skip_redis_reads_that_do_not_pay_but_still_write_and_probe(
    make_cache: CacheFactory,
) -> None:
    cache = make_cache()  # adaptive reads; a computed miss costs a loop turn, a read far more
    keys = [cache.keys.key_for_row(_row(v)) for v in range(200)]
    for i, key in enumerate(keys):
        assert await predict(cache, key, partial(_value, i / 1000)) == (i / 1000, False)
    await cache.wait_for_writes()
    stats = cache.stats().l2
    assert stats.read_policy == "adaptive"
    assert stats.reads_pay is False
    assert stats.skipped_reads >= 150
    assert stats.probe_reads >= 1
    assert stats.misses == 200 - stats.skipped_reads  # every key not skipped was looked up
    assert stats.written == 200  # skipped reads still write: other workers benefit
    assert await cached_answers(make_cache(), keys[:3]) == [i / 1000 for i in range(3)]


async def test_misses_read_redis_when_the_model_is_slower_than_a_read(
    make_cache: CacheFactory,
) -> None:
    writer, reader = make_cache(), make_cache()
    keys = [writer.keys.key_for_row(_row(v)) for v in range(40)]
    await store_answers(writer, ((key, 0.25) for key in keys[::2]))
    await writer.wait_for_writes()

    async def slow_model() -> float:
        await asyncio.sleep(0.05)
        return 0.75

    answers = [await predict(reader, key, slow_model) for key in keys]
    assert answers == [(0.25, True), (0.75, False)] * 20
    stats = reader.stats()
    assert (stats.l2.skipped_reads, stats.l2.hits, stats.computed) == (0, 20, 20)
    assert stats.l2.reads_pay is True


async def test_always_policy_reads_redis_on_every_miss(make_cache: CacheFactory) -> None:
    cache = make_cache(l2_read_policy="always")
    keys = [cache.keys.key_for_row(_row(v)) for v in range(100)]
    for key in keys:
        await predict(cache, key, partial(_value, 0.5))
    stats = cache.stats().l2
    assert (stats.read_policy, stats.skipped_reads, stats.misses) == ("always", 0, 100)


async def _until_written(cache: PredictionCache, count: int) -> None:
    for _ in range(200):
        if cache.stats().l2.written >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not written: {cache.stats().l2}")


async def test_answers_computed_within_the_write_delay_share_one_write(
    make_cache: CacheFactory,
) -> None:
    cache = make_cache(l2_write_delay=0.2, l2_read_policy="always")
    keys = [cache.keys.key_for_row(_row(v)) for v in range(3)]
    for i, key in enumerate(keys):  # three event-loop turns, three misses
        await predict(cache, key, partial(_value, i / 10))
        await asyncio.sleep(0)
    assert (cache.stats().l2.pending_writes, cache.stats().l2.written) == (3, 0)
    await _until_written(cache, 3)
    stats = cache.stats().l2
    assert stats.calls == 4  # one MGET per miss, one write for the three
    assert await cached_answers(make_cache(), keys) == [i / 10 for i in range(3)]


async def test_a_full_write_batch_goes_out_without_waiting_for_the_delay(
    make_cache: CacheFactory,
) -> None:
    cache = make_cache(l2_write_delay=60, l2_keys_per_command=4)
    await store_answers(cache, ((cache.keys.key_for_row(_row(v)), 0.5) for v in range(4)))
    await _until_written(cache, 4)
    assert cache.stats().l2.pending_writes == 0


async def test_a_batch_whose_redis_read_does_not_pay_counts_every_key_skipped(
    make_cache: CacheFactory,
) -> None:
    cache = make_cache()
    cache.read_policy.record_read(100, 0, 0.001)  # measured: no hits, 1 ms a read
    cache.read_policy.record_compute(0.000_01)  # and 10 us a computed miss
    keys = cache.keys.keys_for_rows(np.random.default_rng(2).random((10, 19), dtype=np.float32))

    async def compute(indices: list[int]) -> list[float]:
        return [0.5] * len(indices)

    values, cached = await cache.get_or_compute_many(keys, compute)
    assert (values, cached) == ([0.5] * 10, [False] * 10)
    stats = cache.stats().l2
    assert (stats.skipped_reads, stats.misses, stats.calls) == (10, 0, 0)
