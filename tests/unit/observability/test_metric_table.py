"""The metric table: its rows are checked when declared and built into one registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from churn_mlops.observability.metric_table import (
    SERVICE_METRICS,
    SHORT_BUCKETS,
    MetricSpec,
    build_metrics,
)


def test_service_metric_names_are_unique_and_prefixed() -> None:
    names = [spec.name for spec in SERVICE_METRICS]
    assert len(names) == len(set(names))
    assert all(name.startswith("churn_") for name in names)
    # prometheus-client appends `_total` to counters; a name ending in it would be exported once.
    assert not any(s.name.endswith("_total") for s in SERVICE_METRICS if s.kind == "counter")


def test_every_gauge_counts_live_workers_only() -> None:
    gauges = [spec for spec in SERVICE_METRICS if spec.kind == "gauge"]
    assert gauges
    # A stopped worker's values leave the exposition: sums over the live workers, per-worker
    # state (`liveall`: which version each worker serves) with a pid label, or the freshest of
    # figures every worker computes alike (`livemostrecent`: live model quality).
    assert {spec.multiprocess_mode for spec in gauges} <= {
        "livesum",
        "liveall",
        "livemax",
        "livemostrecent",
    }
    per_worker = {spec.name for spec in gauges if spec.multiprocess_mode == "liveall"}
    assert per_worker == {"churn_model_serving", "churn_model_refused"}


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("histogram", {}, "histograms, and only they, take buckets"),
        ("counter", {"buckets": (1.0,)}, "histograms, and only they, take buckets"),
        ("gauge", {}, "gauges, and only they, take a multiprocess mode"),
        ("counter", {"multiprocess_mode": "livesum"}, "gauges, and only they, take a multiprocess"),
    ],
)
def test_spec_refuses_options_of_another_kind(
    kind: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=f"churn_x: {message}"):
        MetricSpec(kind, "churn_x", "x", **options)  # type: ignore[arg-type]


def test_build_metrics_registers_each_row_by_kind() -> None:
    registry = CollectorRegistry()
    families = build_metrics(
        (
            MetricSpec("counter", "churn_a", "a", ("level",)),
            MetricSpec("gauge", "churn_b", "b", multiprocess_mode="livesum"),
            MetricSpec("histogram", "churn_c_seconds", "c", buckets=SHORT_BUCKETS),
        ),
        registry,
    )
    families.counter("churn_a").labels("l1").inc(2)
    families.gauge("churn_b").set(3)
    families.histogram("churn_c_seconds").observe(0.001)
    assert registry.get_sample_value("churn_a_total", {"level": "l1"}) == 2
    assert registry.get_sample_value("churn_b") == 3
    assert registry.get_sample_value("churn_c_seconds_count") == 1
    assert registry.get_sample_value("churn_c_seconds_bucket", {"le": "1e-05"}) == 0
