from __future__ import annotations

import pytest

from churn_mlops.bench.plan import Run
from churn_mlops.bench.report import BenchMeta, Measurement
from tests.fixtures.load_results import load_result


@pytest.fixture
def meta() -> BenchMeta:
    return BenchMeta(
        started="2026-11-27 02:00 UTC",
        command="churn-mlops bench --duration 10s",
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
