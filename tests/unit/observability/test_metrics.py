"""ServiceMetrics: refresh of the recorders, watched components, exposition."""

from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from churn_mlops.observability.metrics import ServiceMetrics, exported_names


def _samples(metrics: ServiceMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.exposition()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


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
    metrics.watch_counter(metrics.families.counter("churn_requests_shed"), lambda: next(counts))
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

    metrics.watch_counter(metrics.families.counter("churn_requests_shed"), broken)
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
