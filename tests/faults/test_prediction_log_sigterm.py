"""A real `churn-mlops serve` sent SIGTERM writes every buffered prediction before it exits."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from benchmarks.servers import free_port
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.db import schema
from tests.fixtures.serve import CLI, wait_ready
from tests.integration.db.prediction_log.conftest import logged_rows

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_sigterm_writes_every_buffered_prediction(
    postgres_database: str, artifact_dir: Path, tmp_path: Path
) -> None:
    schema.upgrade(postgres_database)
    prefix = f"s{uuid.uuid4().hex[:8]}-"
    port = free_port()
    env = {
        **os.environ,
        "CHURN_ENVIRONMENT": "test",
        "CHURN_AUTH_ENABLED": "false",
        "CHURN_DATABASE_URL": postgres_database,
        # Nothing is written before the shutdown: every row goes out in close().
        "CHURN_PREDICTION_LOG_FLUSH_MS": "600000",
        "CHURN_PREDICTION_LOG_SPILL_PATH": str(tmp_path / "spill" / "predictions.jsonl"),
    }
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port), "--workers", "2", "--model-dir", str(artifact_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    ids = [f"{prefix}{n}" for n in range(200)]
    try:
        wait_ready(base_url, process, timeout=90)

        def predict(customer_id: str) -> int:
            body = {"customer_id": customer_id, "features": EXAMPLE_FEATURES}
            return httpx.post(f"{base_url}/predict", json=body, timeout=30).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(predict, ids))
        assert statuses == [200] * len(ids)
        assert asyncio.run(logged_rows(postgres_database, prefix)) == []

        process.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once its graceful shutdown is over.
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    rows = asyncio.run(logged_rows(postgres_database, prefix))
    assert sorted(external for _, _, external in rows) == sorted(ids)
    assert len({row_id for row_id, _, _ in rows}) == len(ids)
    assert not (tmp_path / "spill").exists() or not any((tmp_path / "spill").iterdir())
