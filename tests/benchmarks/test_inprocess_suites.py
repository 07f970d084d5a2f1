"""The in-process A/Bs of the harness, at a tiny size: each gives one positive figure per block
for each configuration, through the one driver (`benchmarks.inprocess`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from benchmarks.auth_inprocess import app_cost_us, guard_cost_us
from benchmarks.db_cpu import measure as db_cpu
from benchmarks.metrics_ab import in_process_cpu as metrics_cpu
from benchmarks.prediction_log_ab import (
    PredictionLogABOptions,
    record_cost_ns,
    run_prediction_log_ab,
)
from churn_mlops.db import schema
from churn_mlops.db.cli import seed_with_progress
from churn_mlops.model.artifact import ModelArtifact

pytestmark = pytest.mark.timeout(180)


def test_record_cost_gives_one_figure_per_repeat() -> None:
    figures = record_cost_ns(calls=50, batches=20, repeats=3)
    assert len(figures) == 3
    assert all(figure > 0 for figure in figures)


def test_prediction_log_ab_in_process_times_each_block_until_the_log_has_written_its_rows(
    artifact_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'churn.db'}"
    # The log-on app's writer spills (if ever) under the test's folder, not the checkout's var/.
    monkeypatch.setenv("CHURN_PREDICTION_LOG_SPILL_PATH", str(tmp_path / "spill.jsonl"))
    options = PredictionLogABOptions(url, artifact_dir, 1, 1, 0, 1, 1, False, None)
    lines = run_prediction_log_ab(
        options, in_process=True, blocks=2, block_requests=20, record_batches=20
    )
    assert lines[0].startswith("record(): ")
    assert lines[1] == "| app | median CPU us per request | min | max | blocks |"
    assert [line.split(" | ")[0] for line in lines[3:5]] == ["| log-off", "| log-on"]
    assert all(line.endswith("| 2 |") for line in lines[3:5])
    assert lines[5].startswith("log-on adds ")


def test_metrics_ab_in_process_gives_a_figure_per_block_for_both_apps(
    artifact_dir: Path, artifact: ModelArtifact
) -> None:
    figures = metrics_cpu(artifact_dir, artifact, blocks=2, block_requests=20)
    assert list(figures) == ["metrics on", "metrics off"]
    assert all(len(values) == 2 and min(values) > 0 for values in figures.values())


def test_guard_cost_with_authentication_and_without() -> None:
    figures = guard_cost_us(calls=200, blocks=2)
    assert list(figures) == ["auth-on", "auth-off"]
    assert all(figure > 0 for figure in figures.values())


def test_app_cost_admits_the_key_on_the_authenticated_app(artifact_dir: Path) -> None:
    # Every call must answer 2xx: a refused key would stop the run.
    figures = app_cost_us(artifact_dir, requests=20, blocks=2)
    assert list(figures) == ["auth-on", "auth-off"]
    assert all(figure > 0 for figure in figures.values())


def test_db_cpu_times_the_detail_and_both_listings(artifact_dir: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'churn.db'}"
    schema.upgrade(url)
    asyncio.run(seed_with_progress(url, dataset=False, synthetic=60, predictions=120))
    figures = asyncio.run(db_cpu(url, artifact_dir, requests=10, customers=60))
    assert list(figures) == [
        "GET /customers/{id}",
        "GET /customers?limit=50",
        "seed's N+1 listing, limit=50",
    ]
    assert all(cpu_ms > 0 for cpu_ms in figures.values())
