"""`churn-mlops serve` with a database: it migrates before the workers start."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from benchmarks.servers import churn_service, start_server
from churn_mlops.db import schema

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_serve_migrates_an_older_schema_and_serves_customers(
    artifact_dir: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/serve.db"
    schema.upgrade(url, "0001_initial")
    spec = churn_service(
        artifact_dir,
        workers=1,
        env={"CHURN_DATABASE_URL": url, "CHURN_AUTH_ENABLED": "false"},
    )
    with start_server(spec, tmp_path / "logs") as server:
        ready = httpx.get(server.url("/health/ready"), timeout=10).json()
        customers = httpx.get(server.url("/customers"), timeout=10)
    assert ready["database"] == "ok"
    assert customers.status_code == 200
    assert customers.json() == {"items": [], "next_after": None}
    assert anyio.run(schema.current_revision_of, url) == schema.head_revisions()
