"""The metrics library: pre-bucketed histograms, deltas, watched components, exposition."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from churn_mlops.observability.metrics import (
    DURATION_BUCKETS,
    Distribution,
    ServiceMetrics,
    add_to_histogram,
    exported_names,
    prepare_multiprocess_dir,
    remove_abandoned_dirs,
    remove_dead_workers,
    shared_metrics_dir,
)

VALUES = [0.00005, 0.0001, 0.0003, 0.002, 0.002, 0.7, 3.0, 12.0]


def _samples(metrics: ServiceMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.exposition()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


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


def test_refresh_counts_requests_by_route_method_and_status() -> None:
    metrics = ServiceMetrics()
    recorder = metrics.recorder
    recorder.finished("/predict", "POST", 200, 0.0002)
    recorder.finished("/predict", "POST", 200, 0.004)
    recorder.finished("/customers/{customer_id}", "GET", 404, 0.01)
    samples = _samples(metrics)
    ok = (("method", "POST"), ("route", "/predict"), ("status", "200"))
    assert samples[("churn_http_requests_total", ok)] == 2
    assert samples[("churn_http_request_duration_seconds_count", ok)] == 2
    assert samples[("churn_http_request_duration_seconds_sum", ok)] == pytest.approx(0.0042)
    bucket = (("le", "0.00025"), *ok)
    assert samples[("churn_http_request_duration_seconds_bucket", bucket)] == 1
    missing = (("method", "GET"), ("route", "/customers/{customer_id}"), ("status", "404"))
    assert samples[("churn_http_requests_total", missing)] == 1
    # A second scrape adds nothing that was already added.
    assert _samples(metrics)[("churn_http_requests_total", ok)] == 2


def test_refresh_samples_requests_in_flight() -> None:
    metrics = ServiceMetrics()
    metrics.recorder.in_flight = 3
    assert _samples(metrics)[("churn_http_requests_in_flight", ())] == 3


def test_timed_score_records_rows_and_duration() -> None:
    metrics = ServiceMetrics()
    score = metrics.model.timed(lambda rows: [0.5] * len(rows))
    assert score([1, 2, 3]) == [0.5, 0.5, 0.5]
    metrics.model.queue_wait.observe(0.001)
    samples = _samples(metrics)
    assert samples[("churn_model_batch_size_rows_sum", ())] == 3
    assert samples[("churn_model_inference_seconds_count", ())] == 1
    assert samples[("churn_batch_queue_wait_seconds_sum", ())] == pytest.approx(0.001)


def test_watch_counter_adds_growth_and_restarts_after_a_reset() -> None:
    metrics = ServiceMetrics()
    counts = iter([5, 8, 2, None, 4])
    metrics.watch_counter(metrics.shed, lambda: next(counts))
    totals = [_samples(metrics)[("churn_requests_shed_total", ())] for _ in range(5)]
    # 5, +3, reset to 2 (counted as 2 new), unknown (unchanged), +2.
    assert totals == [5, 8, 10, 10, 12]


def test_watch_gauge_reads_zero_without_its_component() -> None:
    metrics = ServiceMetrics()
    levels = iter([7, None])
    metrics.watch_db_pool(lambda: next(levels))
    assert _samples(metrics)[("churn_db_pool_connections_in_use", ())] == 7
    assert _samples(metrics)[("churn_db_pool_connections_in_use", ())] == 0


class _LogStats:
    queue_depth = 12
    rows_flushed = 100
    rows_spilled = 3
    rows_replayed = 2
    retries = 1


def test_watch_prediction_log_exports_backlog_and_counts() -> None:
    metrics = ServiceMetrics()
    metrics.watch_prediction_log(_LogStats)
    samples = _samples(metrics)
    assert samples[("churn_prediction_log_queue_depth", ())] == 12
    assert samples[("churn_prediction_log_rows_flushed_total", ())] == 100
    assert samples[("churn_prediction_log_rows_spilled_total", ())] == 3
    assert samples[("churn_prediction_log_rows_replayed_total", ())] == 2
    assert samples[("churn_prediction_log_retries_total", ())] == 1


def test_failing_source_is_logged_once_and_others_still_refresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = ServiceMetrics()

    def broken() -> int:
        raise RuntimeError("component gone")

    metrics.watch_counter(metrics.shed, broken)
    metrics.watch_db_pool(lambda: 4)
    with caplog.at_level(logging.ERROR, logger="churn_mlops.metrics"):
        _samples(metrics)
        samples = _samples(metrics)
    assert samples[("churn_db_pool_connections_in_use", ())] == 4
    assert len(caplog.records) == 1


def test_exported_names_lists_families_and_their_samples() -> None:
    metrics = ServiceMetrics()
    names = exported_names(metrics.exposition()[0])
    assert {
        "churn_http_requests_total",
        "churn_http_request_duration_seconds_bucket",
        "churn_http_request_duration_seconds_count",
        "churn_cache_hits_total",
        "churn_prediction_log_queue_depth",
    } <= names


def test_prepare_multiprocess_dir_empties_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    (tmp_path / "counter_123.db").write_bytes(b"old")
    assert prepare_multiprocess_dir(tmp_path) == tmp_path
    assert list(tmp_path.iterdir()) == []
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)


def test_remove_dead_workers_drops_only_gauges_of_gone_processes(tmp_path: Path) -> None:
    gone = 2**22 + 12345  # above Linux's default pid_max: no such process
    for name in (
        f"gauge_livesum_{gone}.db",
        f"gauge_livesum_{os.getpid()}.db",
        f"counter_{gone}.db",
    ):
        (tmp_path / name).write_bytes(b"")
    assert remove_dead_workers(tmp_path) == [gone]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"gauge_livesum_{os.getpid()}.db", f"counter_{gone}.db"]
    )


def test_shared_metrics_dir_is_removed_after_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with shared_metrics_dir(None) as path:
        assert path is not None
        assert path.is_dir()
        assert path.name.startswith(f"churn-metrics-{os.getpid()}-")
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(path)
    assert not path.exists()


def test_shared_metrics_dir_does_nothing_when_metrics_are_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with shared_metrics_dir(None, enabled=False) as path:
        assert path is None
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_remove_abandoned_dirs_keeps_those_of_live_processes(tmp_path: Path) -> None:
    gone = 2**22 + 54321  # above Linux's default pid_max: no such process
    abandoned = tmp_path / f"churn-metrics-{gone}-abc"
    live = tmp_path / f"churn-metrics-{os.getpid()}-def"
    unrelated = tmp_path / "churn-metrics-old"
    for directory in (abandoned, live, unrelated):
        directory.mkdir()
    assert remove_abandoned_dirs(tmp_path) == [abandoned]
    assert live.exists()
    assert unrelated.exists()
