"""The service suite's production server: its PostgreSQL database prepared, its requests
authenticated and logged there, and its row the report's headline."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from benchmarks.load import Wrk
from benchmarks.production import (
    PRODUCTION_ENV,
    ProductionDatabaseError,
    prepare_database,
    production_credentials,
    production_service,
)
from tests.fixtures.postgres import (
    drop_postgres_database,
    fresh_postgres_database,
    postgres_url,
    require_postgres,
)

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]
BENCH = [sys.executable, "-m", "benchmarks"]


async def _tables_and_predictions(url: str) -> tuple[set[str], int]:
    connection = await asyncpg.connect(url)
    try:
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
        count = await connection.fetchval("SELECT count(*) FROM predictions")
    finally:
        await connection.close()
    return {row["tablename"] for row in tables}, int(count)


def test_prepare_database_creates_a_missing_database_and_migrates_it() -> None:
    require_postgres()
    name = f"churn_bench_test_{uuid.uuid4().hex[:10]}"
    url = postgres_url(name)
    try:
        prepare_database(url)
        prepare_database(url)  # a database that exists already is migrated, not created again
        tables, predictions = asyncio.run(_tables_and_predictions(url))
    finally:
        drop_postgres_database(name)
    assert {"customers", "predictions", "api_keys", "alembic_version"} <= tables
    assert predictions == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///var/churn.db", "is not a PostgreSQL URL"),
        ("postgresql://postgres@127.0.0.1:1/churn_bench", "PostgreSQL at postgresql://"),
    ],
)
def test_prepare_database_names_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ProductionDatabaseError, match=message):
        prepare_database(url)


def test_production_server_runs_everything_a_deployment_turns_on(
    tmp_path: Path, artifact_dir: Path
) -> None:
    with fresh_postgres_database("churn_bench_test") as url:
        prepare_database(url)
        credentials = production_credentials(tmp_path, url)
        spec = production_service(artifact_dir, credentials)
        # The database outlives a run: the next run gets a key of its own.
        again = production_credentials(tmp_path / "again", url)
    assert again.api_key != credentials.api_key
    assert spec.name == "production"
    assert spec.api_key == credentials.api_key
    assert spec.env["CHURN_DATABASE_URL"] == url
    for name, value in PRODUCTION_ENV.items():
        assert spec.env[name] == value
    assert spec.env["CHURN_ENVIRONMENT"] == "production"
    assert spec.env["CHURN_CACHE_ENABLED"] == spec.env["CHURN_PREDICTION_LOG_ENABLED"] == "true"


@pytest.mark.e2e
@pytest.mark.slow
def test_bench_headline_is_the_production_server_logging_to_postgresql(
    wrk: Wrk, tmp_path: Path, artifact_dir: Path
) -> None:
    out = tmp_path / "results"
    with fresh_postgres_database("churn_bench_test") as url:
        completed = subprocess.run(
            [
                *BENCH,
                "service",
                "--only",
                "production,asgi",
                "--connections",
                "32",
                "--overload-connections",
                "0",
                "--duration",
                "2s",
                "--warmup",
                "0",
                "--production-database-url",
                url,
                "--model-dir",
                str(artifact_dir),
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
            cwd=REPO,
        )
        assert completed.returncode == 0, completed.stderr
        _, logged = asyncio.run(_tables_and_predictions(url))
    report = completed.stdout
    headline = next(line for line in report.splitlines() if line.startswith("**Headline**"))
    assert "the production configuration" in headline
    assert "at 32 connections" in headline
    assert "of the raw-ASGI ceiling's" in headline
    assert "| production configuration | 32 | " in report
    assert "Cost: the production configuration's best `/predict` run" in report
    results = json.loads((out / "results.json").read_text())
    [production] = [r["result"] for r in results["runs"] if r["server"] == "production"]
    # Every request carried the bench's key: none was refused (no 401, 403 or 429), and the
    # log on PostgreSQL holds a row for each answer wrk counted (it may count fewer than the
    # server answered). The run starts with no warm-up beside the suite's other tests, so the
    # micro-batcher may shed a turn it cannot take on in time: a few 503s (Retry-After), which
    # log nothing, are the overload protection at work (3 of 33,114 in one run).
    statuses = production["statuses"]
    assert set(statuses) <= {"200", "503"}
    assert statuses["200"] > 0
    assert statuses.get("503", 0) <= statuses["200"] // 100
    assert logged >= statuses["200"]
    assert f"--production-database-url {url}" in results["meta"]["command"]
