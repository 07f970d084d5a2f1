"""The real app (real model artifact, a migrated SQLite database, API keys in it) for fuzzing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from churn_mlops.api.app import ChurnAPI, create_app
from churn_mlops.db import schema as db_schema
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings
from tests.fixtures.security import ALL_SCOPES, provision_key, security_settings

MAX_BATCH_ROWS = 20


def contract_settings(**overrides: Any) -> Settings:
    """The settings of the fuzzed app; the OpenAPI document depends on `max_batch_rows`."""
    return Settings(
        environment="test",
        max_batch_rows=MAX_BATCH_ROWS,
        # Fuzzing sends thousands of requests with one key: the limiter runs, never refuses.
        rate_limit_per_second=1e9,
        rate_limit_burst=10**9,
        **security_settings(),
        **overrides,
    )


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('contract') / 'churn.db'}"
    db_schema.upgrade(url)
    return url


@pytest.fixture(scope="module")
def api_key(database_url: str) -> str:
    return provision_key(database_url, "contract", ALL_SCOPES)


@pytest.fixture(scope="module")
def real_app(
    database_url: str,
    artifact_dir: Path,
    artifact: ModelArtifact,
    tmp_path_factory: pytest.TempPathFactory,
) -> ChurnAPI:
    spill = tmp_path_factory.mktemp("spill") / "predictions.jsonl"
    return create_app(
        contract_settings(
            model_dir=artifact_dir, database_url=database_url, prediction_log_spill_path=spill
        ),
        artifact,
    )
