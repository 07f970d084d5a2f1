"""The Grafana dashboard and the Prometheus alert rules only name metrics the service exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from churn_mlops.data import TelcoDataset
from churn_mlops.observability.metrics import exported_names
from tests.fixtures.requests import prediction_bodies

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "churn-dashboard.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
METRIC = re.compile(r"\bchurn_[a-z0-9_]+")


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def dashboard_exprs() -> list[str]:
    return [
        target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", ())
    ]


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def used_metrics(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in METRIC.findall(expr)}


def test_dashboard_and_alerts_name_only_exported_metrics(
    client: TestClient, dataset: TelcoDataset
) -> None:
    bodies = prediction_bodies(dataset, 4)
    for body in (*bodies, bodies[0]):  # misses, then a hit
        assert client.post("/predict", json=body).status_code == 200
    assert client.post("/predict/batch", json=bodies).status_code == 200
    exported = exported_names(client.get("/metrics").content)
    used = used_metrics(dashboard_exprs()) | used_metrics([r["expr"] for r in alert_rules()])
    assert len(used) >= 15
    assert sorted(used - exported) == []


def test_dashboard_shows_every_figure_the_issue_asks_for() -> None:
    exprs = " ".join(dashboard_exprs())
    for metric in (
        "churn_http_requests_total",  # RPS and error rate
        "churn_http_request_duration_seconds_bucket",  # p50/p95/p99
        "churn_cache_hits_total",
        "churn_cache_misses_total",
        "churn_model_batch_size_rows_bucket",
        "churn_batch_queue_wait_seconds_bucket",
        "churn_model_inference_seconds_bucket",
        "churn_db_pool_connections_in_use",
        "churn_prediction_log_queue_depth",
        "churn_model_live_roc_auc",  # live model quality per version
        "churn_model_live_brier_score",
        "churn_model_live_calibration_error",
        "churn_model_live_outcomes",
    ):
        assert metric in exprs, metric
    assert {"0.5", "0.95", "0.99"} <= set(re.findall(r"histogram_quantile\(([0-9.]+)", exprs))


def test_dashboard_queries_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    panels = dashboard()["panels"]
    uids = {panel["datasource"]["uid"] for panel in panels if panel["type"] != "row"}
    uids |= {t["datasource"]["uid"] for panel in panels for t in panel.get("targets", ())}
    assert uids == {provisioned}
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))


def test_alert_rules_cover_the_slos() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert "> 0.5" in rules["ChurnApiLatencyP95High"]["expr"]
    assert "histogram_quantile(0.95" in rules["ChurnApiLatencyP95High"]["expr"]
    assert "> 0.01" in rules["ChurnApiErrorRateHigh"]["expr"]
    assert "< 0.3" in rules["ChurnCacheHitRateLow"]["expr"]
    assert "churn_requests_shed_total" in rules["ChurnApiShedding"]["expr"]
    assert "churn_prediction_log_rows_spilled_total" in rules["ChurnPredictionLogSpilling"]["expr"]
    live_auc = rules["ChurnModelLiveRocAucLow"]
    assert "churn_model_live_roc_auc) < 0.70" in live_auc["expr"]
    assert "churn_model_live_outcomes) >= 200" in live_auc["expr"]
    assert 'churn_model_serving{alias="champion"}' in live_auc["expr"]
    assert live_auc["for"] == "1h"
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"page", "warning"}
        assert rule["annotations"]["summary"]


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is not installed: `make tools` installs Debian's prometheus")
        pytest.skip("promtool is not installed (make tools)")
    return promtool


@pytest.mark.timeout(60)
def test_alert_rules_pass_promtool_check() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(ALERTS)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


ALERT_TESTS = Path(__file__).with_name("alerts_test.yml")


@pytest.mark.timeout(60)
def test_alert_rules_fire_on_bad_series_and_stay_quiet_on_healthy_ones() -> None:
    # promtool's rule unit tests: synthetic series in, expected alerts (with their annotations)
    # out at given times, so a threshold, a `for` or a label matcher that drifts fails here.
    result = subprocess.run(
        [_promtool(), "test", "rules", ALERT_TESTS.name],
        cwd=ALERT_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
