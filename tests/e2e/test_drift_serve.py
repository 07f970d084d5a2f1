"""Live drift in a real `churn-mlops serve --workers 2`: a stream sampled from the model's
training rows keeps every PSI gauge under 0.05; a drifted stream (tenure halved, every contract
month-to-month) sends the tenure, contract and prediction gauges over 0.2, computed from both
workers' windows merged."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.model_selection import train_test_split

from benchmarks.servers import free_port
from churn_mlops.data import TelcoDataset
from churn_mlops.model.artifact import ModelArtifact
from tests.conftest import QUICK_TRAINING
from tests.fixtures.requests import prediction_bodies
from tests.fixtures.serve import CLI, wait_ready, wait_workers_started

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

WINDOW_SECONDS = 10
STREAM_ROWS = 3000
# 30 batches from 8 threads, each on a new connection: both workers accept some of them.
BATCH_ROWS = 100


@dataclass(frozen=True)
class Server:
    base_url: str
    log: Path


@pytest.fixture(scope="module")
def server(artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("drift-e2e")
    port = free_port()
    env = {
        **os.environ,
        "CHURN_ENVIRONMENT": "test",
        "CHURN_AUTH_ENABLED": "false",
        # Every row scored: no cache answers a repeated customer.
        "CHURN_CACHE_ENABLED": "false",
        "CHURN_METRICS_MULTIPROC_DIR": str(work / "metrics"),
        "CHURN_METRICS_REFRESH_SECONDS": "0.2",
        "CHURN_DRIFT_WINDOW_SECONDS": str(WINDOW_SECONDS),
    }
    log = work / "serve.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [CLI, "serve", "--port", str(port), "--workers", "2", "--model-dir", str(artifact_dir)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, process, timeout=120, exit_details=lambda: log.read_text()[-3000:])
        wait_workers_started(log, 2)
        yield Server(base_url, log)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def training_indices(dataset: TelcoDataset, artifact: ModelArtifact) -> np.ndarray:
    """The customers the test model was trained on: the training split of QUICK_TRAINING."""
    indices, _ = train_test_split(
        np.arange(len(dataset)),
        test_size=QUICK_TRAINING.holdout_fraction,
        stratify=np.array(dataset.churned),
        random_state=QUICK_TRAINING.seed,
    )
    assert len(indices) == artifact.info.training_rows
    return np.asarray(indices)


def drift_gauges(base_url: str) -> dict[tuple[str, str], float]:
    response = httpx.get(f"{base_url}/metrics", timeout=5, headers={"Connection": "close"})
    assert response.status_code == 200
    return {
        (sample.name, sample.labels.get("feature", "")): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name in {"churn_feature_psi", "churn_prediction_psi", "churn_drift_window_rows"}
    }


def send(base_url: str, bodies: list[dict[str, Any]]) -> set[str]:
    """Post the bodies in batches over new connections from 8 threads; the workers that
    answered."""

    def post(batch: list[dict[str, Any]]) -> str:
        response = httpx.post(
            f"{base_url}/predict/batch",
            json=batch,
            timeout=30,
            headers={"Connection": "close"},
        )
        assert response.status_code == 200, response.text
        return response.headers["x-request-id"].rsplit("-", 1)[0]

    batches = [bodies[i : i + BATCH_ROWS] for i in range(0, len(bodies), BATCH_ROWS)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return set(pool.map(post, batches))


def wait_for_rows(base_url: str, done: Any, timeout: float) -> dict[tuple[str, str], float]:
    deadline = time.monotonic() + timeout
    while True:
        gauges = drift_gauges(base_url)
        if done(gauges.get(("churn_drift_window_rows", ""), 0.0)):
            return gauges
        assert time.monotonic() < deadline, f"window rows stayed at {gauges}"
        time.sleep(0.2)


def test_drifted_stream_crosses_0_2_and_undrifted_stays_under_0_05(
    server: Server, dataset: TelcoDataset, artifact: ModelArtifact
) -> None:
    rng = np.random.default_rng(18)
    training = training_indices(dataset, artifact)
    every = prediction_bodies(dataset, len(dataset))

    undrifted = [every[i] for i in rng.choice(training, STREAM_ROWS, replace=False)]
    workers = send(server.base_url, undrifted)
    # Both workers' rows (and each worker's warm-up row, while it is in the window).
    gauges = wait_for_rows(server.base_url, lambda rows: rows >= STREAM_ROWS, timeout=10)
    assert len(workers) == 2, "both workers should have scored part of the stream"
    psi = {
        name: value
        for (metric, name), value in gauges.items()
        if metric != "churn_drift_window_rows"
    }
    assert len(psi) == 20  # 19 features and the prediction
    assert max(psi.values()) < 0.05, psi

    # The window slides: once it has emptied, only the drifted stream is in it.
    wait_for_rows(server.base_url, lambda rows: rows == 0, timeout=WINDOW_SECONDS + 15)
    drifted = []
    for i in rng.choice(len(dataset), STREAM_ROWS, replace=False):
        body = every[i]
        features = {
            **body["features"],
            "tenure": body["features"]["tenure"] // 2,
            "contract": "Month-to-month",
        }
        drifted.append({**body, "features": features})
    send(server.base_url, drifted)
    gauges = wait_for_rows(server.base_url, lambda rows: rows == STREAM_ROWS, timeout=10)
    assert gauges[("churn_feature_psi", "tenure")] > 0.2
    assert gauges[("churn_feature_psi", "contract")] > 0.2
    assert gauges[("churn_prediction_psi", "")] > 0.2
    unchanged = {
        name: value
        for (metric, name), value in gauges.items()
        if metric == "churn_feature_psi" and name not in {"tenure", "contract", "total_charges"}
    }
    assert max(unchanged.values()) < 0.05, unchanged
