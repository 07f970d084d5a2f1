from __future__ import annotations

import os
import shutil
from dataclasses import replace
from typing import Any

import pytest

from benchmarks.load import LoadResult, Wrk
from benchmarks.plan import Run
from benchmarks.summary import BenchMeta, CacheSnapshot, Measurement
from churn_mlops.cache import BreakerState, CacheStats, L1Stats, L2Stats
from tests.fixtures.load_results import load_result


@pytest.fixture
def meta() -> BenchMeta:
    return BenchMeta(
        started="2026-11-27 02:00 UTC",
        command="python -m benchmarks service --duration 10s",
        duration_s=10,
        warmup_s=2,
        rounds=1,
        workers=2,
        cores=2,
        price_per_core_hour=0.04,
        wrk_version="wrk 4.1.0 [epoll]",
        model_version="v123",
        service_env={"CHURN_CACHE_ENABLED": "false"},
    )


@pytest.fixture
def measurements() -> list[Measurement]:
    """One of each kind of run, in the order a bench makes them (not the report's order)."""
    return [
        Measurement(Run("predict", "service", 1), load_result(10_000, 1.0)),
        Measurement(Run("predict", "naive", 1), load_result(1_000, 10.0)),
        Measurement(Run("predict", "asgi", 1), load_result(80_000, 0.1)),
        Measurement(Run("predict", "fastapi", 1), load_result(40_000, 0.2)),
        Measurement(
            Run("predict", "naive", 32),
            load_result(900, 300.0, statuses={200: 899, 500: 1}, errors={"timeout": 2}),
        ),
        Measurement(Run("batch", "service", 4, 1_000), load_result(500, 40.0)),
        Measurement(Run("batch", "naive", 4, 1_000), load_result(50, 400.0)),
        Measurement(
            Run("overload", "service", 512),
            load_result(20_000, 50.0, statuses={200: 15_000, 503: 5_000}),
        ),
    ]


@pytest.fixture
def cache_meta(meta: BenchMeta) -> BenchMeta:
    return replace(
        meta,
        command="python -m benchmarks cache --hit-ratio 0.5",
        warm_customers=500,
        redis_url="redis://127.0.0.1:6379/0",
        redis_key_prefix="churn-bench-0123456789ab",
        redis_keys_removed=23_000,
    )


def _cached(result: LoadResult, cached: int) -> LoadResult:
    return replace(result, cached=cached)


@pytest.fixture
def cache_measurements() -> list[Measurement]:
    """The cache suite's runs, interleaved as a bench makes them."""
    return [
        Measurement(Run("hit", "service", 32, hit_ratio=1.0), load_result(90_000, 3.0)),
        Measurement(
            Run("hit", "cache-l1", 32, hit_ratio=1.0),
            _cached(load_result(120_000, 2.0), 120_000),
        ),
        Measurement(
            Run("hit", "cache-l2", 32, hit_ratio=1.0),
            _cached(load_result(110_000, 2.5, statuses={200: 109_989, 503: 11}), 109_989),
        ),
        Measurement(
            Run("mixed", "cache-l1", 32, hit_ratio=0.5),
            _cached(load_result(70_000, 4.5), 35_070),
        ),
        Measurement(
            Run("mixed", "cache-l2", 32, hit_ratio=0.5),
            _cached(load_result(45_000, 8.0), 22_455),
        ),
        Measurement(Run("mixed", "service", 32, hit_ratio=0.5), load_result(88_000, 3.2)),
    ]


def worker_stats(
    l1_size: int,
    l1_hits: int,
    l1_misses: int,
    computed: int,
    l2: tuple[int, int] | None = None,
    *,
    skipped: int = 0,
) -> dict[str, Any]:
    """One worker's `GET /cache/stats` answer; `l2` is (hits, written) when L2 is on, and
    `skipped` lookups were not sent to Redis (one timeout opened the breaker for the rest)."""
    l2_hits, written = l2 or (0, 0)
    stats = CacheStats(
        model_version="v123",
        hit_rate=(l1_hits + l2_hits) / (l1_hits + l1_misses),
        computed=computed,
        joined=l1_misses - computed - l2_hits,
        uncacheable=0,
        l1=L1Stats(l1_hits, l1_misses, l1_size, 100_000, 300.0, 0, 0),
        l2=L2Stats(
            enabled=l2 is not None,
            hits=l2_hits,
            misses=l1_misses - l2_hits if l2 else 0,
            corrupt=0,
            unavailable=skipped,
            ttl_seconds=600.0,
            pending_writes=0,
            written=written,
            failed_writes=skipped,
            dropped_writes=0,
            breaker_state=BreakerState.CLOSED if l2 else None,
            breaker_outages=1 if skipped else 0,
            breaker_failures=0,
            breaker_short_circuited=0,
            last_error=None,
            calls=0,
            timeouts=5 if skipped else 0,
            errors=0,
            saturated=0,
            read_policy="adaptive",
            reads_pay=True,
            skipped_reads=0,
            probe_reads=0,
            recent_hit_rate=1.0,
            read_ms=0.0,
            compute_ms=0.0,
        ),
    )
    return {"enabled": True, **stats.as_dict()}


@pytest.fixture
def cache_snapshots() -> list[CacheSnapshot]:
    return [
        CacheSnapshot(
            "cache-l1",
            "after warming",
            [worker_stats(500, 4_500, 510, 500), worker_stats(500, 4_400, 500, 500)],
        ),
        CacheSnapshot(
            "cache-l2",
            "after warming",
            [
                worker_stats(500, 4_000, 500, 500, (0, 500)),
                worker_stats(500, 4_100, 500, 0, (500, 0)),
            ],
        ),
        CacheSnapshot("cache-l1", "after the runs", [worker_stats(18_000, 79_000, 18_000, 18_000)]),
        CacheSnapshot(
            "cache-l2",
            "after the runs",
            [
                worker_stats(11_000, 60_000, 11_000, 10_500, (500, 9_000), skipped=1_500),
                worker_stats(11_500, 61_000, 11_500, 11_000, (500, 11_000)),
            ],
        ),
    ]


@pytest.fixture(scope="module")
def wrk(tmp_path_factory: pytest.TempPathFactory) -> Wrk:
    if shutil.which("wrk") is None:
        # CI must measure, not skip: `make test` installs wrk there.
        if os.environ.get("CI") == "true":
            pytest.fail("wrk is not installed: apt-get install -y wrk")
        pytest.skip("wrk is not installed: apt-get install -y wrk")
    return Wrk(tmp_path_factory.mktemp("wrk"))
