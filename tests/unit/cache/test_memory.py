"""LruTtlCache: bounded, least recently used out first, entries expire on a fake clock."""

from __future__ import annotations

import pytest

from churn_mlops.cache.memory import LruTtlCache
from tests.unit.cache.conftest import FakeClock


def _cache(clock: FakeClock, capacity: int = 3, ttl: float = 10.0) -> LruTtlCache[str, float]:
    return LruTtlCache(capacity, ttl, clock=clock)


def test_get_returns_what_was_set_and_counts_hits_and_misses(clock: FakeClock) -> None:
    cache = _cache(clock)
    cache.set("a", 0.25)
    assert cache.get("a") == 0.25
    assert cache.get("b") is None
    assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)


def test_full_cache_evicts_the_least_recently_used_entry(clock: FakeClock) -> None:
    cache = _cache(clock, capacity=3)
    for key in "abc":
        cache.set(key, 0.5)
    cache.get("a")  # now b is the least recently used
    cache.set("d", 0.5)
    assert [key for key in "abcd" if cache.get(key) is not None] == ["a", "c", "d"]
    assert cache.evictions == 1
    assert len(cache) == 3


def test_setting_an_existing_key_refreshes_its_recency_and_value(clock: FakeClock) -> None:
    cache = _cache(clock, capacity=2)
    cache.set("a", 0.1)
    cache.set("b", 0.2)
    cache.set("a", 0.3)
    cache.set("c", 0.4)
    assert cache.get("a") == 0.3
    assert cache.get("b") is None


def test_entry_expires_after_its_ttl(clock: FakeClock) -> None:
    cache = _cache(clock, ttl=10.0)
    cache.set("a", 0.5)
    clock.advance(9.999)
    assert cache.get("a") == 0.5
    clock.advance(0.001)
    assert cache.get("a") is None
    assert cache.expired == 1
    assert len(cache) == 0


def test_setting_again_restarts_the_ttl(clock: FakeClock) -> None:
    cache = _cache(clock, ttl=10.0)
    cache.set("a", 0.5)
    clock.advance(8)
    cache.set("a", 0.5)
    clock.advance(8)
    assert cache.get("a") == 0.5


def test_a_hit_does_not_extend_the_ttl(clock: FakeClock) -> None:
    cache = _cache(clock, ttl=10.0)
    cache.set("a", 0.5)
    clock.advance(6)
    assert cache.get("a") == 0.5
    clock.advance(6)
    assert cache.get("a") is None


def test_zero_capacity_stores_nothing(clock: FakeClock) -> None:
    cache = _cache(clock, capacity=0)
    cache.set("a", 0.5)
    assert cache.get("a") is None
    assert len(cache) == 0


def test_clear_empties_the_cache_and_says_how_many_entries_it_held(clock: FakeClock) -> None:
    cache = _cache(clock)
    cache.set("a", 0.1)
    cache.set("b", 0.2)
    assert cache.clear() == 2
    assert cache.get("a") is None
    assert len(cache) == 0


@pytest.mark.parametrize(("capacity", "ttl"), [(-1, 1.0), (1, 0.0), (1, -5.0)])
def test_invalid_capacity_or_ttl_is_refused(capacity: int, ttl: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        LruTtlCache(capacity, ttl)
