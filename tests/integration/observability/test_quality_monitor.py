"""QualityMonitor against a real database: the gauges it sets per model version, a version
leaving the window, a database outage (last values kept, logged once) and its task."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import date

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.servers import free_port
from churn_mlops.db.engine import Database
from churn_mlops.model.quality_metrics import quality_figures
from churn_mlops.observability.metrics import ServiceMetrics
from churn_mlops.observability.quality import QualityMonitor
from churn_mlops.settings import Settings
from tests.fixtures.outcomes import add_customers, add_outcome, add_prediction, utc

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

TODAY = date(2026, 3, 31)
# (churned, v1's probability, v2's shadow probability) of six customers.
CASES = [
    (True, 0.9, 0.6),
    (True, 0.4, 0.7),
    (False, 0.3, 0.2),
    (False, 0.6, 0.1),
    (False, 0.1, 0.5),
    (True, 0.8, 0.9),
]
GAUGES = (
    "churn_model_live_roc_auc",
    "churn_model_live_brier_score",
    "churn_model_live_calibration_error",
    "churn_model_live_outcomes",
)


def _gauges(metrics: ServiceMetrics) -> dict[tuple[str, str], float]:
    exposition = metrics.exposition()[0].decode()
    return {
        (sample.name, sample.labels["version"]): sample.value
        for family in text_string_to_metric_families(exposition)
        if family.name in GAUGES
        for sample in family.samples
    }


async def _scored_outcomes(database: Database, observed_at: date = date(2026, 3, 20)) -> None:
    ids = await add_customers(database, *(f"C-{n}" for n in range(len(CASES))))
    for (churned, v1, v2), customer in zip(CASES, ids.values(), strict=True):
        await add_prediction(database, customer, "v1", v1, utc(2026, 3, 1), challenger=("v2", v2))
        await add_outcome(database, customer, observed_at, churned)


def _monitor(database: Database, metrics: ServiceMetrics) -> QualityMonitor:
    return QualityMonitor(
        database, metrics, window_days=30, refresh_seconds=0.05, today=lambda: TODAY
    )


async def test_refresh_sets_each_version_figures(database: Database) -> None:
    await _scored_outcomes(database)
    metrics = ServiceMetrics()
    monitor = _monitor(database, metrics)
    assert await monitor.refresh()
    churned = np.array([case[0] for case in CASES])
    gauges = _gauges(metrics)
    for version, column in (("v1", 1), ("v2", 2)):
        expected = quality_figures(churned, [case[column] for case in CASES])
        assert monitor.figures[version] == expected
        assert gauges[("churn_model_live_roc_auc", version)] == pytest.approx(expected.roc_auc)
        assert gauges[("churn_model_live_brier_score", version)] == pytest.approx(
            expected.brier_score
        )
        assert gauges[("churn_model_live_calibration_error", version)] == pytest.approx(
            expected.calibration_error
        )
        assert gauges[("churn_model_live_outcomes", version)] == 6
    assert monitor.figures["v1"].roc_auc == pytest.approx(8 / 9)


async def test_window_is_the_last_window_days_days(database: Database) -> None:
    monitor = _monitor(database, ServiceMetrics())
    # Through tomorrow: the latest date an outcome may carry (today somewhere east of UTC).
    assert monitor.window() == (date(2026, 3, 2), date(2026, 4, 1))


async def test_outcomes_outside_the_window_are_not_counted(database: Database) -> None:
    await _scored_outcomes(database, observed_at=date(2026, 3, 1))
    metrics = ServiceMetrics()
    monitor = _monitor(database, metrics)
    assert await monitor.refresh()
    assert monitor.figures == {}
    assert _gauges(metrics) == {}


async def test_a_version_leaving_the_window_gets_nan_and_no_outcomes(database: Database) -> None:
    await _scored_outcomes(database)
    metrics = ServiceMetrics()
    today = {"date": TODAY}
    monitor = QualityMonitor(
        database, metrics, window_days=30, refresh_seconds=1, today=lambda: today["date"]
    )
    await monitor.refresh()
    today["date"] = date(2026, 5, 1)
    assert await monitor.refresh()
    gauges = _gauges(metrics)
    assert math.isnan(gauges[("churn_model_live_roc_auc", "v1")])
    assert math.isnan(gauges[("churn_model_live_brier_score", "v2")])
    assert gauges[("churn_model_live_outcomes", "v1")] == 0
    assert monitor.figures == {}


async def test_a_database_outage_keeps_the_last_values_and_logs_once(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    await _scored_outcomes(database)
    metrics = ServiceMetrics()
    monitor = _monitor(database, metrics)
    await monitor.refresh()
    before = _gauges(metrics)
    down = Database.from_url(f"postgresql://postgres@127.0.0.1:{free_port()}/churn")
    monitor.database = down
    try:
        with caplog.at_level(logging.INFO, logger="churn_mlops.quality"):
            assert not await monitor.refresh()
            assert not await monitor.refresh()
            assert _gauges(metrics) == before
            monitor.database = database
            assert await monitor.refresh()
    finally:
        await down.dispose()
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith(
        "live model quality keeps its last values: the database does not answer ("
    )
    assert messages[1] == "live model quality is computed again"


async def test_start_refreshes_at_once_and_close_stops(database: Database) -> None:
    await _scored_outcomes(database)
    metrics = ServiceMetrics()
    monitor = QualityMonitor.from_settings(
        database, metrics, Settings(quality_window_days=3650, quality_refresh_seconds=60)
    )
    await monitor.start()
    try:
        async with asyncio.timeout(10):
            while monitor.refreshed_at is None:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.01)
    finally:
        await monitor.close()
    assert set(monitor.figures) == {"v1", "v2"}
    await monitor.close()  # a second close does nothing
