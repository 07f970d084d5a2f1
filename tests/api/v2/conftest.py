"""The whole app in process, with the V2 routes, a small batch limit and an API key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from churn_mlops.api.app import create_app
from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import CATEGORICAL_FEATURES, FEATURE_NAMES, INTEGER_FEATURES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings
from tests.fixtures.security import api_client, security_settings

MAX_BATCH_ROWS = 100


@pytest.fixture
def client(artifact_dir: Path, artifact: ModelArtifact) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=artifact_dir,
        max_batch_rows=MAX_BATCH_ROWS,
        environment="test",
        **security_settings(),
    )
    with api_client(create_app(settings, artifact)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def rows(dataset: TelcoDataset) -> list[dict[str, Any]]:
    return list(dataset.feature_rows())


def feature_arrays(rows: list[dict[str, Any]]) -> dict[str, np.ndarray[Any, Any]]:
    """Each feature's column as the numpy array a tritonclient caller would send."""
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for name in FEATURE_NAMES:
        column = [row[name] for row in rows]
        if name in CATEGORICAL_FEATURES:
            arrays[name] = np.array([v.encode() for v in column], dtype=np.object_)
        elif name in INTEGER_FEATURES:
            arrays[name] = np.array(column, dtype=np.int64)
        else:
            arrays[name] = np.array([np.nan if v is None else v for v in column], dtype=np.float64)
    return arrays


DATATYPES = {"O": "BYTES", "i": "INT64", "f": "FP64"}
