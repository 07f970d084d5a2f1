"""The hot-path recorders: plain-Python distributions and their transfer into histograms."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from churn_mlops.observability.metric_table import DURATION_BUCKETS
from churn_mlops.observability.recorders import Distribution, add_to_histogram

VALUES = [0.00005, 0.0001, 0.0003, 0.002, 0.002, 0.7, 3.0, 12.0]


def _without_created(registry: CollectorRegistry) -> list[str]:
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if "_created" not in line]


def test_add_to_histogram_exposes_what_observe_would() -> None:
    observed_registry, added_registry = CollectorRegistry(), CollectorRegistry()
    observed = Histogram("h_seconds", "h", buckets=DURATION_BUCKETS, registry=observed_registry)
    added = Histogram("h_seconds", "h", buckets=DURATION_BUCKETS, registry=added_registry)
    distribution = Distribution(DURATION_BUCKETS)
    for value in VALUES:
        observed.observe(value)
        distribution.observe(value)
    delta = distribution.delta()
    assert delta is not None
    add_to_histogram(added, *delta)
    assert _without_created(added_registry) == _without_created(observed_registry)


def test_add_to_histogram_refuses_a_bucket_count_mismatch() -> None:
    histogram = Histogram("h2_seconds", "h", buckets=(1.0, 2.0), registry=CollectorRegistry())
    with pytest.raises(ValueError, match="4 bucket counts for a histogram of 3"):
        add_to_histogram(histogram, [1, 0, 0, 0], 1.0)


def test_distribution_delta_gives_only_new_observations() -> None:
    distribution = Distribution((1.0, 2.0))
    distribution.observe(1.0)  # on the bound: the `le="1.0"` bucket
    distribution.observe(5.0)
    assert distribution.delta() == ([1, 0, 1], 6.0)
    assert distribution.delta() is None
    distribution.observe(1.5)
    assert distribution.delta() == ([0, 1, 0], 1.5)
