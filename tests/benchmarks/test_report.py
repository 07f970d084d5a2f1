from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.plan import Run
from benchmarks.report import markdown, results_document, write_results
from benchmarks.summary import (
    BenchMeta,
    CacheSnapshot,
    Measurement,
    cost_per_million,
    slo_check,
    summarise,
)
from tests.fixtures.load_results import load_result

# What `markdown` makes of the `measurements` fixture: checked by hand, then frozen.
EXPECTED_MARKDOWN = (Path(__file__).parent / "expected_report.md").read_text()
# The same for `cache_measurements` and `cache_snapshots` with `cache_meta`.
EXPECTED_CACHE_MARKDOWN = (Path(__file__).parent / "expected_cache_report.md").read_text()


def test_markdown_compares_every_server_with_the_baseline_and_the_ceilings(
    measurements: list[Measurement], meta: BenchMeta
) -> None:
    assert markdown(summarise(measurements), meta) == EXPECTED_MARKDOWN


def test_markdown_shows_no_latencies_for_a_run_without_answers(meta: BenchMeta) -> None:
    stuck = load_result(0, 0.0, statuses={})
    report = markdown(summarise([Measurement(Run("predict", "service", 32), stuck)]), meta)
    row = "| churn-mlops service | 32 | 0 | - | - | - | - | 0 | - | - | - | - | missed "
    missed = "P50 < 100 ms, P95 < 500 ms, P99 < 1 s, > 100 RPS, < 0.1 % errors |"
    assert row + missed in report


def test_markdown_states_the_cost_per_million_of_the_best_service_run(meta: BenchMeta) -> None:
    runs = [
        Measurement(Run("predict", "service", 1), load_result(1_000, 1.0, duration_s=1.0)),
        Measurement(Run("predict", "service", 32), load_result(36_000, 1.0, duration_s=1.0)),
        Measurement(Run("predict", "naive", 32), load_result(90_000, 1.0, duration_s=1.0)),
    ]
    report = markdown(summarise(runs), replace(meta, price_per_core_hour=0.5))
    # 36,000 requests/s on 2 cores for a million requests: 27.8 s of 2 cores at 0.5 USD an hour.
    assert (
        "Cost: the service's best `/predict` run (32 connections) answered 36,000 requests/s on "
        "2 cores, 18,000 per core; at 0.5 USD per core-hour that is **0.0077 USD per million "
        "requests** (target < 1 USD: met)."
    ) in report


def test_markdown_opens_with_the_production_configuration_against_the_asgi_ceiling(
    meta: BenchMeta,
) -> None:
    runs = [
        Measurement(Run("predict", "asgi", 32), load_result(20_000, 2.0, duration_s=1.0)),
        Measurement(Run("predict", "production", 32), load_result(11_000, 4.0, duration_s=1.0)),
        Measurement(Run("predict", "service", 32), load_result(12_000, 3.0, duration_s=1.0)),
    ]
    report = markdown(summarise(runs), meta)
    headline = (
        "**Headline**: the production configuration (API-key auth, rate limits, metrics, L1 "
        "cache, prediction log on PostgreSQL) answered 11,000 requests/s at 32 connections, "
        "p99 16.00 ms, 55% of the raw-ASGI ceiling's 20,000."
    )
    assert headline in report
    assert report.index(headline) < report.index("## POST /predict")
    # The cost is the production configuration's, even where the cache-off service is faster.
    assert "Cost: the production configuration's best `/predict` run (32 connections)" in report


def test_markdown_has_no_headline_without_a_production_run(
    measurements: list[Measurement], meta: BenchMeta
) -> None:
    assert "Headline" not in markdown(summarise(measurements), meta)


def test_markdown_cost_target_is_missed_by_a_slow_service(meta: BenchMeta) -> None:
    runs = [Measurement(Run("predict", "service", 1), load_result(100, 1.0, duration_s=1.0))]
    report = markdown(summarise(runs), replace(meta, price_per_core_hour=40.0))
    assert "**222.2222 USD per million requests** (target < 1 USD: missed)." in report


def test_summarise_takes_medians_over_rounds_and_sums_counts() -> None:
    rounds = [
        Measurement(Run("predict", "service", 8, round=0), load_result(1_000, 3.0)),
        Measurement(
            Run("predict", "service", 8, round=1),
            load_result(3_000, 1.0, statuses={200: 2_990, 503: 10}),
        ),
        Measurement(Run("predict", "service", 8, round=2), load_result(2_000, 2.0)),
    ]
    (summary,) = summarise(rounds)
    assert summary.rounds == 3
    assert summary.rps == 200.0
    assert summary.latency_ms["p50"] == 2.0
    assert summary.latency_ms["p99"] == 8.0
    assert summary.requests == 6_000
    assert summary.statuses == {200: 5_990, 503: 10}
    assert summary.failed == 10
    assert summary.error_rate == pytest.approx(10 / 6_000)


def test_summarise_orders_by_scenario_then_connections_then_server(
    measurements: list[Measurement],
) -> None:
    order = [(s.scenario, s.server, s.connections) for s in summarise(measurements)]
    assert order == [
        ("predict", "naive", 1),
        ("predict", "service", 1),
        ("predict", "fastapi", 1),
        ("predict", "asgi", 1),
        ("predict", "naive", 32),
        ("batch", "naive", 4),
        ("batch", "service", 4),
        ("overload", "service", 512),
    ]


def test_slo_check_names_each_target_of_the_course_chapter() -> None:
    (summary,) = summarise([Measurement(Run("predict", "service", 1), load_result(10_000, 1.0))])
    assert slo_check(summary) == {
        "P50 < 100 ms": True,
        "P95 < 500 ms": True,
        "P99 < 1 s": True,
        "> 100 RPS": True,
        "< 0.1 % errors": True,
    }


def test_slo_check_targets_are_strict_bounds() -> None:
    # p50 100 ms, p95 300 ms, p99 400 ms; 1,000 requests in 10 s is exactly 100 RPS; 1 in 1,000
    # failed is exactly 0.1 %.
    result = load_result(1_000, 100.0, statuses={200: 999, 500: 1})
    (summary,) = summarise([Measurement(Run("predict", "service", 1), result)])
    assert slo_check(summary) == {
        "P50 < 100 ms": False,
        "P95 < 500 ms": True,
        "P99 < 1 s": True,
        "> 100 RPS": False,
        "< 0.1 % errors": False,
    }


def test_cost_per_million_charges_every_core_for_the_time_the_requests_take() -> None:
    # 1,000 requests/s on 2 cores: a million take 1,000 s, i.e. 2,000/3,600 core-hours.
    assert cost_per_million(1_000, 2, 0.04) == pytest.approx(0.04 * 2_000 / 3_600)
    assert cost_per_million(0, 2, 0.04) is None


def test_results_document_holds_raw_runs_and_summaries_with_their_slo(
    measurements: list[Measurement], meta: BenchMeta
) -> None:
    document = results_document(meta, measurements, summarise(measurements))
    assert document["meta"]["service_env"] == {"CHURN_CACHE_ENABLED": "false"}
    assert len(document["runs"]) == len(measurements)
    assert document["runs"][0] == {
        "scenario": "predict",
        "server": "service",
        "connections": 1,
        "rows": 1,
        "round": 0,
        "hit_ratio": None,
        "result": {
            "requests": 10_000,
            "duration_s": 10.0,
            "rps": 1_000.0,
            "errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0},
            "non_2xx": 0,
            "statuses": {"200": 10_000},
            "cached": 0,
            "fresh_span": 0,
            "latency_ms": {
                "p50": 1.0,
                "p90": 2.0,
                "p95": 3.0,
                "p99": 4.0,
                "p99.9": 5.0,
                "max": 6.0,
                "mean": 1.5,
            },
        },
    }
    overload = document["summaries"][-1]
    assert overload["scenario"] == "overload"
    assert overload["statuses"] == {"200": 15_000, "503": 5_000}
    assert overload["error_rate"] == 0.25
    assert overload["usd_per_million_requests"] == pytest.approx(0.04 * 2 / 3_600 / 2_000 * 1e6)
    assert overload["slo"]["< 0.1 % errors"] is False
    batch = document["summaries"][-2]
    assert (batch["server"], batch["rows_per_s"]) == ("service", 50_000.0)
    json.dumps(document)  # JSON-ready as it is


def test_write_results_writes_json_markdown_and_a_png_plot(
    tmp_path: Path, measurements: list[Measurement], meta: BenchMeta
) -> None:
    summaries, report = write_results(tmp_path / "out", meta, measurements)
    assert report == EXPECTED_MARKDOWN
    assert (tmp_path / "out" / "report.md").read_text() == EXPECTED_MARKDOWN
    stored = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(stored["summaries"]) == len(summaries) == 8
    assert (tmp_path / "out" / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_compares_the_caches_with_the_cache_off_and_shows_their_stats(
    cache_measurements: list[Measurement],
    cache_meta: BenchMeta,
    cache_snapshots: list[CacheSnapshot],
) -> None:
    report = markdown(summarise(cache_measurements), cache_meta, cache_snapshots)
    assert report == EXPECTED_CACHE_MARKDOWN


def test_markdown_cache_rows_give_target_observed_hits_and_the_ratio_to_cache_off(
    cache_measurements: list[Measurement], cache_meta: BenchMeta
) -> None:
    report = markdown(summarise(cache_measurements), cache_meta)
    assert "| mixed | L1 only | 32 | 50% | 50.1% | 7,000 | 4.50 | 18.00 | 0 | 0.80x |" in report
    # 109,989 of 110,000 answers cached: not rounded up to all of them.
    assert "| hit path | L1 + L2 (Redis) | 32 | 100% | >99.9% | 11,000 |" in report
    assert "## GET /cache/stats" not in report


def test_markdown_without_cache_runs_has_no_cache_table(
    measurements: list[Measurement], meta: BenchMeta
) -> None:
    report = markdown(summarise(measurements), meta)
    assert "prediction cache" not in report


def test_summarise_sums_cached_answers_over_rounds_and_keeps_the_target() -> None:
    rounds = [
        Measurement(
            Run("mixed", "cache-l1", 32, round=round_, hit_ratio=0.5),
            replace(load_result(requests, 1.0), cached=cached),
        )
        for round_, (requests, cached) in enumerate([(1_000, 480), (3_000, 1_530)])
    ]
    (summary,) = summarise(rounds)
    assert (summary.cached, summary.requests) == (2_010, 4_000)
    assert summary.cached_ratio == pytest.approx(2_010 / 4_000)
    assert summary.hit_ratio == 0.5


def test_results_document_keeps_the_cache_stats_and_observed_hits(
    tmp_path: Path,
    cache_measurements: list[Measurement],
    cache_meta: BenchMeta,
    cache_snapshots: list[CacheSnapshot],
) -> None:
    _, report = write_results(tmp_path, cache_meta, cache_measurements, cache_snapshots)
    assert report == EXPECTED_CACHE_MARKDOWN
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["meta"]["redis_keys_removed"] == 23_000
    assert [(s["server"], s["moment"], len(s["workers"])) for s in stored["cache_stats"]] == [
        ("cache-l1", "after warming", 2),
        ("cache-l2", "after warming", 2),
        ("cache-l1", "after the runs", 1),
        ("cache-l2", "after the runs", 2),
    ]
    mixed = [s for s in stored["summaries"] if s["scenario"] == "mixed"]
    assert [(s["server"], s["hit_ratio"], s["cached"]) for s in mixed] == [
        ("service", 0.5, 0),
        ("cache-l1", 0.5, 35_070),
        ("cache-l2", 0.5, 22_455),
    ]


def test_markdown_says_when_the_l2_server_skipped_redis_and_only_then(
    cache_measurements: list[Measurement],
    cache_meta: BenchMeta,
    cache_snapshots: list[CacheSnapshot],
) -> None:
    summaries = summarise(cache_measurements)
    warning = "**Redis was skipped for 1,500 lookups** (timeouts: 5, circuit breaker openings: 1)"
    assert warning in markdown(summaries, cache_meta, cache_snapshots)
    # Without the last snapshot, where one worker skipped Redis.
    assert "skipped for" not in markdown(summaries, cache_meta, cache_snapshots[:-1])
