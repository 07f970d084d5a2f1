"""Train with the real CLI, serve with the real CLI, talk HTTP to it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from benchmarks.servers import free_port
from churn_mlops.data import SHIPPED_DATASET, TelcoDataset, load_telco_csv
from churn_mlops.model.artifact import ModelArtifact
from tests.fixtures.requests import prediction_bodies
from tests.fixtures.security import SECURITY_ENV
from tests.fixtures.serve import CLI, stop, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cli_trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("cli")
    data = work / "customers.csv"
    shutil.copy(SHIPPED_DATASET, data)
    out = work / "model"
    result = subprocess.run(
        [
            CLI,
            "train",
            "--data",
            str(data),
            "--out",
            str(out),
            "--search-iterations",
            "2",
            "--cv-folds",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ROC AUC" in result.stdout
    assert f"Artifact written to {out}" in result.stderr
    return out


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], dict[str, str]]:
    """A database with an API key made by `churn-mlops keys create`: the servers' environment,
    and the headers that authenticate a request."""
    directory = tmp_path_factory.mktemp("e2e-db")
    env = {
        "CHURN_ENVIRONMENT": "test",
        "CHURN_DATABASE_URL": f"sqlite:///{directory / 'churn.db'}",
        # Never the checkout's var/: another server would replay these rows into its database.
        "CHURN_PREDICTION_LOG_SPILL_PATH": str(directory / "spill" / "predictions.jsonl"),
        **SECURITY_ENV,
    }
    result = subprocess.run(
        [CLI, "keys", "create", "--name", "e2e", "--scope", "predict,read"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return env, {"X-API-Key": result.stdout.strip().splitlines()[-1]}


def _start_serve(
    model_dir: Path, workers: int, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    """`churn-mlops serve` on a free port, ready to answer; the caller stops it."""
    port = free_port()
    command = [CLI, "serve", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(
        [*command, "--model-dir", str(model_dir)],
        env={**os.environ, "CHURN_ENVIRONMENT": "test", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, process)
    except BaseException:
        process.kill()
        process.wait(timeout=5)
        raise
    return process, base_url


@pytest.fixture(scope="module")
def server(
    cli_trained_model: Path, credentials: tuple[dict[str, str], dict[str, str]]
) -> Iterator[str]:
    process, base_url = _start_serve(cli_trained_model, workers=2, env=credentials[0])
    try:
        yield base_url
    finally:
        stop(process)


@pytest.fixture(scope="module")
def auth(credentials: tuple[dict[str, str], dict[str, str]]) -> dict[str, str]:
    return credentials[1]


def test_served_model_is_the_cli_trained_one(
    server: str, cli_trained_model: Path, auth: dict[str, str]
) -> None:
    artifact = ModelArtifact.load(cli_trained_model)
    response = httpx.get(f"{server}/model", headers=auth, timeout=5)
    assert response.status_code == 200
    assert response.json()["version"] == artifact.version


def test_predict_over_http_matches_the_model(
    server: str, cli_trained_model: Path, auth: dict[str, str]
) -> None:
    artifact = ModelArtifact.load(cli_trained_model)
    dataset: TelcoDataset = load_telco_csv()
    bodies = prediction_bodies(dataset, 10, start=300)
    expected = artifact.estimator.predict_proba(
        artifact.encoder.encode_columns(dataset.subset(range(300, 310)).columns)
    )[:, 1]
    with httpx.Client(base_url=server, headers=auth, timeout=5) as http:
        for body, probability in zip(bodies, expected, strict=True):
            response = http.post("/predict", json=body)
            assert response.status_code == 200
            # Served by the compiled forest, which matches the estimator within 1e-5.
            assert response.json()["churn_probability"] == pytest.approx(probability, abs=1e-5)
            assert float(response.headers["x-process-time"]) >= 0
        batch = http.post("/predict/batch", json=bodies)
    assert batch.status_code == 200
    served = [p["churn_probability"] for p in batch.json()["predictions"]]
    assert served == pytest.approx(expected.tolist(), abs=1e-5)


def test_predict_without_a_key_over_http_is_refused(server: str) -> None:
    response = httpx.post(f"{server}/predict", json={"features": {}}, timeout=5)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="churn-mlops"'
    assert response.headers["content-type"] == "application/problem+json"


def test_bad_input_over_http_is_a_problem_document(server: str, auth: dict[str, str]) -> None:
    response = httpx.post(
        f"{server}/predict",
        content=b"not json",
        headers={**auth, "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "body"


def test_serve_refuses_a_corrupt_artifact(cli_trained_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    shutil.copytree(cli_trained_model, broken)
    (broken / "metadata.json").write_text("{}")
    result = subprocess.run(
        [CLI, "serve", "--port", str(free_port()), "--model-dir", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "refusing to serve" in result.stderr


def test_sigterm_answers_every_queued_prediction_before_exiting(
    cli_trained_model: Path,
    dataset_bodies: list[dict[str, object]],
    credentials: tuple[dict[str, str], dict[str, str]],
) -> None:
    # Requests wait 1.5 s in the micro-batcher, so SIGTERM arrives while they are queued.
    env = {**credentials[0], "CHURN_BATCH_MAX_WAIT_MS": "1500", "CHURN_CACHE_ENABLED": "false"}
    process, base_url = _start_serve(cli_trained_model, workers=1, env=env)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            pending = [
                pool.submit(
                    httpx.post,
                    f"{base_url}/predict",
                    json=body,
                    headers=credentials[1],
                    timeout=30,
                )
                for body in dataset_bodies[:8]
            ]
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            answers = [future.result() for future in pending]
        # uvicorn re-raises the signal once its graceful shutdown is over.
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    assert [answer.status_code for answer in answers] == [200] * 8
    assert [a.json()["customer_id"] for a in answers] == [
        b["customer_id"] for b in dataset_bodies[:8]
    ]


@pytest.fixture(scope="module")
def dataset_bodies() -> list[dict[str, object]]:
    return prediction_bodies(load_telco_csv(), 8, start=42)  # type: ignore[return-value]
