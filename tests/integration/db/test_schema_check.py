from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from anyio import to_thread
from fastapi.testclient import TestClient

from churn_mlops.api.app import create_app
from churn_mlops.db import schema
from churn_mlops.db.engine import Database
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings

pytestmark = pytest.mark.timeout(120)


def _settings(artifact_dir: Path, database_url: str) -> Settings:
    return Settings(
        model_dir=artifact_dir,
        environment="test",
        auth_enabled=False,
        prediction_log_enabled=False,
        database_url=database_url,
    )


@pytest.mark.anyio
async def test_ensure_schema_current_refuses_an_empty_database(database_url: str) -> None:
    await to_thread.run_sync(schema.downgrade, database_url, "base")
    database = Database.from_url(database_url)
    try:
        with pytest.raises(schema.SchemaNotCurrent) as refused:
            await schema.ensure_schema_current(database.engine)
    finally:
        await database.dispose()
    needed = ", ".join(schema.head_revisions())
    assert str(refused.value) == (
        "database schema is at empty (no migrations applied), the code needs "
        f"{needed}: run `churn-mlops db upgrade`"
    )


@pytest.mark.anyio
async def test_ensure_schema_current_refuses_an_older_revision(database_url: str) -> None:
    if schema.head_revisions() == ("0001_initial",):
        pytest.skip("0001_initial is the head: no older revision to refuse")
    await to_thread.run_sync(schema.downgrade, database_url, "base")
    await to_thread.run_sync(schema.upgrade, database_url, "0001_initial")
    database = Database.from_url(database_url)
    try:
        with pytest.raises(schema.SchemaNotCurrent, match="schema is at 0001_initial"):
            await schema.ensure_schema_current(database.engine)
        await to_thread.run_sync(schema.upgrade, database_url)
        await schema.ensure_schema_current(database.engine)
    finally:
        await database.dispose()


def test_app_refuses_to_start_on_a_schema_that_is_not_current(
    database_url: str, artifact_dir: Path, artifact: ModelArtifact
) -> None:
    schema.downgrade(database_url, "base")
    app = create_app(_settings(artifact_dir, database_url), artifact)
    with (
        pytest.raises(schema.SchemaNotCurrent, match="run `churn-mlops db upgrade`"),
        TestClient(app),
    ):
        pass
    assert app.runtime is None


def test_app_starts_on_a_current_schema_and_reports_the_database(
    database_url: str, artifact_dir: Path, artifact: ModelArtifact
) -> None:
    schema.upgrade(database_url)
    app = create_app(_settings(artifact_dir, database_url), artifact)
    with TestClient(app) as client:
        ready = client.get("/health/ready").json()
        assert app.runtime is not None
        database = app.runtime.database
    assert ready["status"] == "ready"
    assert ready["database"] == "ok"
    assert database is not None
    assert app.runtime is None  # stopped (and the database disposed) on shutdown


def test_the_code_revisions_are_the_head_of_the_migration_scripts() -> None:
    # A new migration must update schema.CODE_REVISIONS, which the start-up check compares.
    assert schema.head_revisions() == schema.CODE_REVISIONS


START_AND_LIST_MODULES = """
import asyncio, json, sys
from pathlib import Path
from churn_mlops.api.app import create_app
from churn_mlops.settings import Settings
from tests.fixtures.lifespan import in_process_client

async def main():
    settings = Settings(model_dir=Path(sys.argv[1]), database_url=sys.argv[2],
                        environment="test", auth_enabled=False)
    async with in_process_client(create_app(settings)) as client:
        assert (await client.get("/health/ready")).status_code == 200
asyncio.run(main())
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_a_worker_on_a_current_database_does_not_import_alembic(
    artifact_dir: Path, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'current.db'}"
    schema.upgrade(url)
    result = subprocess.run(
        [sys.executable, "-c", START_AND_LIST_MODULES, str(artifact_dir), url],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    modules = set(json.loads(result.stdout.splitlines()[-1]))
    assert "churn_mlops" in modules
    assert "sqlalchemy" in modules  # it did open the database
    assert "alembic" not in modules
