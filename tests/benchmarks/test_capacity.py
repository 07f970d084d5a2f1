from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from benchmarks.capacity import (
    CapacityError,
    ClusterShape,
    Throughput,
    best_throughput,
    load_results,
    max_pods_for_postgres,
    plan,
    recommended_rps_per_pod,
    throughputs_from_results,
)
from benchmarks.cli import app


def summary(
    server: str,
    connections: int,
    rps: float,
    p99: float,
    *,
    scenario: str = "predict",
    error_rate: float = 0.0,
    rows: int = 1,
) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "server": server,
        "connections": connections,
        "rows": rows,
        "rps": rps,
        "requests": int(rps * 10),
        "latency_ms": {"p50": p99 / 3, "p99": p99},
        "error_rate": error_rate,
    }


def results(*summaries: dict[str, Any], cores: int = 2) -> dict[str, Any]:
    meta = {"cores": cores, "command": "python -m benchmarks service"}
    return {"meta": meta, "summaries": list(summaries)}


def test_best_throughput_skips_runs_over_the_p99_target_or_with_errors() -> None:
    summaries = [
        summary("service", 1, 3_000, 1.0),
        summary("service", 32, 10_000, 7.0),
        summary("service", 128, 12_000, 30.0),
        summary("service", 64, 11_000, 9.0, error_rate=0.01),
        summary("service", 4, 50, 100.0, rows=10_000),
    ]

    best = best_throughput(summaries, 2, scenario="predict", server="service", p99_target_ms=25)

    assert best is not None
    assert (best.connections, best.rps, best.rps_per_core) == (32, 10_000, 5_000)


def test_throughputs_from_results_refuses_a_run_without_a_usable_service_figure() -> None:
    document = results(summary("service", 128, 12_000, 30.0), summary("naive", 1, 11, 90.0))

    with pytest.raises(CapacityError, match="p99 <= 25 ms"):
        throughputs_from_results(document, 25)


def test_throughputs_from_results_lists_cache_configurations_after_cache_off() -> None:
    document = results(
        summary("service", 32, 10_000, 7.0),
        summary("cache-l1", 32, 9_000, 8.0, scenario="mixed"),
        summary("cache-l2", 32, 6_000, 12.0, scenario="mixed"),
    )

    labels = [t.label for t in throughputs_from_results(document, 25)]

    assert labels == [
        "cache off, every request computed",
        "cache L1, mixed",
        "cache L1 + L2, mixed",
    ]


def test_throughputs_from_results_puts_the_production_configuration_first() -> None:
    document = results(
        summary("service", 32, 10_000, 7.0),
        summary("production", 32, 8_000, 6.0),
        summary("production", 128, 9_000, 40.0),
    )

    first, second = throughputs_from_results(document, 25)

    assert first.label == "production configuration, every request computed"
    assert (first.rps, first.connections) == (8_000, 32)
    assert second.label == "cache off, every request computed"


def test_plan_takes_the_metric_that_asks_for_most_pods() -> None:
    throughput = Throughput("cache off", rps=10_000, cores=2, connections=32, p99_ms=7)
    seed = ClusterShape()

    at_seed_targets = plan(10_000, throughput, seed)
    # 5,000 RPS per core; the CPU target holds a pod at 0.35 cores = 1,750 RPS.
    assert at_seed_targets.pods_by_cpu == 6
    assert at_seed_targets.pods_by_rps_metric == 100
    assert at_seed_targets.pods == 100
    assert at_seed_targets.cores_used == pytest.approx(2.0)
    assert at_seed_targets.cores_requested == pytest.approx(50.0)
    assert at_seed_targets.db_connections == 100 * 39  # 20 + 10 pooled, 8 reads, the log's 1
    assert not at_seed_targets.fits_postgres


def test_plan_keeps_the_minimum_replicas_for_a_small_load() -> None:
    throughput = Throughput("cache off", rps=10_000, cores=2, connections=32, p99_ms=7)

    small = plan(50, throughput, ClusterShape())

    assert small.pods == ClusterShape().min_replicas


def test_plan_bills_the_larger_of_cores_used_and_requested() -> None:
    throughput = Throughput("slow", rps=100, cores=1, connections=1, p99_ms=7)
    shape = ClusterShape(hpa_rps_per_pod=1e9, price_per_core_hour=3.6)

    p = plan(1_000, throughput, shape)

    # 10 cores used, 29 pods x 0.5 requested: the 14.5 requested cores are billed.
    assert p.cores_used == pytest.approx(10.0)
    assert p.pods == 29
    assert p.usd_per_million == pytest.approx(3.6 * 14.5 / 3600 / 1_000 * 1e6)


def test_recommended_rps_per_pod_leaves_headroom_and_never_drops_below_one_hundred() -> None:
    fast = Throughput("fast", rps=10_000, cores=2, connections=32, p99_ms=7)
    slow = Throughput("slow", rps=50, cores=2, connections=1, p99_ms=7)

    assert recommended_rps_per_pod(fast, ClusterShape()) == 3_500
    assert recommended_rps_per_pod(slow, ClusterShape()) == 100


def test_max_pods_for_postgres_reserves_connections_outside_the_pools() -> None:
    # 20 + 10 pooled, 8 for the customer reads and 1 for the prediction log per pod.
    assert max_pods_for_postgres(ClusterShape()) == 4
    small = ClusterShape(db_pool_size=2, db_max_overflow=2, db_read_pool_size=3)
    assert small.db_connections_per_pod == 8
    assert max_pods_for_postgres(small) == 23


def test_load_results_names_a_missing_or_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(CapacityError, match="run `python -m benchmarks service` first"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"runs": []}))
    with pytest.raises(CapacityError, match="not a bench results file"):
        load_results(tmp_path)


def test_capacity_command_prints_the_plan_for_each_target(tmp_path: Path) -> None:
    document = results(summary("service", 32, 10_000, 7.0))
    (tmp_path / "results.json").write_text(json.dumps(document))

    outcome = CliRunner().invoke(app, ["capacity", str(tmp_path), "--targets", "1000,10000"])

    assert outcome.exit_code == 0, outcome.output
    plan_rows = [line for line in outcome.stdout.splitlines() if line.startswith("| cache off")]
    # One measured row, then seed and measured HPA targets for each of the two loads.
    assert len(plan_rows) == 1 + 2 * 2
    assert "| 3,500 (measured) | 10,000 |" in outcome.stdout
    assert "holds the pools of 4 pods" in outcome.stdout


def test_capacity_command_refuses_a_missing_results_file(tmp_path: Path) -> None:
    outcome = CliRunner().invoke(app, ["capacity", str(tmp_path / "none.json")])

    assert outcome.exit_code == 2
    assert "run `python -m benchmarks service` first" in outcome.output
