"""`GET /metrics` of a real `churn-mlops serve --workers 2`: every scrape, whichever worker
answers it, sums the requests of both workers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.servers import free_port
from churn_mlops.data import TelcoDataset
from churn_mlops.observability.metric_table import SERVICE_METRICS
from churn_mlops.observability.metrics import exported_names
from tests.api.observability.test_dashboards import alert_rules, dashboard_exprs, used_metrics
from tests.fixtures.requests import prediction_bodies
from tests.fixtures.serve import CLI, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

REQUESTS = 120


class Server:
    def __init__(self, base_url: str, metrics_dir: Path) -> None:
        self.base_url = base_url
        self.metrics_dir = metrics_dir


@pytest.fixture(scope="module")
def server(artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("metrics-e2e")
    port = free_port()
    env = {
        **os.environ,
        "CHURN_ENVIRONMENT": "test",
        "CHURN_AUTH_ENABLED": "false",
        "CHURN_DATABASE_URL": f"sqlite:///{work / 'churn.db'}",
        "CHURN_PREDICTION_LOG_SPILL_PATH": str(work / "spill.jsonl"),
        "CHURN_METRICS_MULTIPROC_DIR": str(work / "metrics"),
        "CHURN_METRICS_REFRESH_SECONDS": "0.2",
    }
    (work / "metrics").mkdir()
    (work / "metrics" / "counter_1.db").write_bytes(b"left by an earlier run")
    with (work / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [CLI, "serve", "--port", str(port), "--workers", "2", "--model-dir", str(artifact_dir)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(
            base_url,
            process,
            timeout=120,
            exit_details=lambda: (work / "serve.log").read_text()[-3000:],
        )
        yield Server(base_url, work / "metrics")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def worker_of(response: httpx.Response) -> str:
    """Request ids start with a random prefix of the worker process that answered."""
    return response.headers["x-request-id"].rsplit("-", 1)[0]


def scrape(base_url: str) -> tuple[str, dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    # A new connection each time, so that scrapes land on either worker.
    response = httpx.get(f"{base_url}/metrics", timeout=5, headers={"Connection": "close"})
    assert response.status_code == 200
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    return worker_of(response), samples


PREDICT_OK = frozenset({("route", "/predict"), ("method", "POST"), ("status", "200")})


@dataclass(frozen=True)
class Traffic:
    workers: set[str]
    """The workers that answered predictions."""
    sent: int
    """Predictions answered (each 200)."""


@pytest.fixture(scope="module")
def traffic(server: Server, dataset: TelcoDataset) -> Traffic:
    """REQUESTS predictions over new connections from 8 threads, repeated until both workers
    have answered some (the kernel hands connections to whichever worker accepts first)."""
    bodies = prediction_bodies(dataset, REQUESTS, start=500)

    def send(body: dict[str, object]) -> str:
        response = httpx.post(
            f"{server.base_url}/predict", json=body, timeout=10, headers={"Connection": "close"}
        )
        assert response.status_code == 200, response.text
        return worker_of(response)

    workers: set[str] = set()
    sent = 0
    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(max_workers=8) as pool:
        while len(workers) < 2 and time.monotonic() < deadline:
            workers |= set(pool.map(send, bodies))
            sent += len(bodies)
    return Traffic(workers, sent)


def test_scrapes_of_either_worker_sum_both_workers(server: Server, traffic: Traffic) -> None:
    assert len(traffic.workers) == 2, "both workers should have answered predictions"
    deadline = time.monotonic() + 20
    totals: dict[str, float] = {}
    # Until every scrape shows all requests (a refresh is at most 0.2 s away in each worker) and
    # both workers have answered a scrape.
    while time.monotonic() < deadline and (
        len(totals) < 2 or set(totals.values()) != {traffic.sent}
    ):
        worker, samples = scrape(server.base_url)
        totals[worker] = samples.get(("churn_http_requests_total", PREDICT_OK), 0.0)
        time.sleep(0.1)
    assert totals.keys() == traffic.workers
    assert set(totals.values()) == {traffic.sent}
    _, samples = scrape(server.base_url)
    assert samples[("churn_http_request_duration_seconds_count", PREDICT_OK)] == traffic.sent
    assert samples[("churn_http_requests_in_flight", frozenset())] == 0
    misses = samples[("churn_cache_misses_total", frozenset({("level", "l1")}))]
    hits = samples[("churn_cache_hits_total", frozenset({("level", "l1")}))]
    assert misses + hits == traffic.sent


def test_prediction_log_rows_of_both_workers_are_counted(server: Server, traffic: Traffic) -> None:
    deadline = time.monotonic() + 20
    flushed = 0.0
    while time.monotonic() < deadline and flushed < traffic.sent:
        flushed = scrape(server.base_url)[1].get(
            ("churn_prediction_log_rows_flushed_total", frozenset()), 0.0
        )
        time.sleep(0.2)
    assert flushed == traffic.sent


def test_metrics_dir_was_emptied_at_start(server: Server, traffic: Traffic) -> None:
    assert not (server.metrics_dir / "counter_1.db").exists()
    pids = {path.stem.rsplit("_", 1)[1] for path in server.metrics_dir.glob("counter_*.db")}
    assert len(pids) == 2


EVENT_ONLY = {
    "churn_model_refused",
    "churn_model_live_roc_auc",
    "churn_model_live_brier_score",
    "churn_model_live_calibration_error",
    "churn_model_live_outcomes",
}


def test_dashboard_and_alerts_metrics_are_exported_by_the_server(
    server: Server, traffic: Traffic
) -> None:
    response = httpx.get(f"{server.base_url}/metrics", timeout=5)
    exported = exported_names(response.content)
    used = used_metrics(dashboard_exprs()) | used_metrics([r["expr"] for r in alert_rules()])
    # A multiprocess collector knows a labelled family only once a worker set a child: these
    # appear with their event (a refused version; outcomes to judge a version by), which this
    # server without a registry or outcomes never has. They are in the service's metric table.
    declared = {spec.name for spec in SERVICE_METRICS}
    assert declared >= EVENT_ONLY
    assert sorted(used - exported - EVENT_ONLY) == []
