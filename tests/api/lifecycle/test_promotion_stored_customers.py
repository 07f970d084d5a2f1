"""`PUT /model/champion` refuses (409) a version the stored customers lack columns for, naming
them, and changes nothing; a version that reads the stored columns is promoted."""

from __future__ import annotations

from pathlib import Path

import pytest
from anyio import to_thread

from churn_mlops.api.app import create_app
from churn_mlops.data import load_telco_csv
from churn_mlops.db import schema
from churn_mlops.db.engine import Database
from churn_mlops.db.seed import seed_dataset
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.registry import LocalRegistry
from churn_mlops.settings import Settings
from tests.fixtures.lifespan import in_process_client
from tests.fixtures.security import api_key_headers

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


async def _telco_customers(url: str) -> None:
    database = Database.from_url(url)
    try:
        await seed_dataset(database, load_telco_csv().subset(range(25)))
    finally:
        await database.dispose()


async def test_put_champion_refuses_a_model_stored_customers_lack_columns_for(
    registry_settings: Settings,
    registry: LocalRegistry,
    artifact: ModelArtifact,
    own_artifact_dir: Path,
    v2: str,
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/customers.db"
    await to_thread.run_sync(schema.upgrade, url)
    await _telco_customers(url)
    own = registry.register(own_artifact_dir).version
    settings = registry_settings.model_copy(
        update={"model_poll_seconds": 60.0, "database_url": url}
    )
    app = create_app(settings)
    async with in_process_client(app, api_key_headers(app)) as client:
        refused = await client.put("/model/champion", json={"version": own})
        assert refused.status_code == 409
        assert refused.headers["content-type"] == "application/problem+json"
        detail = refused.json()["detail"]
        refused = "region, seats, monthly_spend, has_support_contract"  # not the nullable ones
        assert f"model {own} reads {refused}, which stored customers" in detail
        assert registry.aliases()["champion"] == artifact.version

        accepted = await client.put("/model/champion", json={"version": v2})
        assert accepted.status_code == 200, accepted.text
        assert registry.aliases()["champion"] == v2
