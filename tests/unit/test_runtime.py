"""The composition root: what `open_runtime` starts, in which order it stops, and the one
reference to the served model."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson
import pytest

from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.db import schema
from churn_mlops.db.engine import Database
from churn_mlops.db.prediction_log import PredictionLogWriter
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.observability.metrics import ServiceMetrics
from churn_mlops.prediction.pipeline import PredictionPipeline
from churn_mlops.runtime import ModelSlot, ServedModel, build_pipeline, open_runtime
from churn_mlops.security.services import SecurityServices
from churn_mlops.settings import Settings

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def _settings(artifact_dir: Path, **overrides: Any) -> Settings:
    options: dict[str, Any] = {
        "model_dir": artifact_dir,
        "environment": "test",
        "database_url": "",
        "auth_enabled": False,
        **overrides,
    }
    return Settings(**options)


async def test_open_runtime_serves_the_model_until_it_closes(
    artifact_dir: Path, artifact: ModelArtifact
) -> None:
    async with open_runtime(_settings(artifact_dir), artifact) as runtime:
        served = runtime.model.current
        assert served is not None
        assert served.artifact is artifact
        assert runtime.pipeline is served.pipeline
        answer = orjson.loads(await served.pipeline.predict_one(orjson.dumps(_body())))
        assert answer["model_version"] == artifact.version
        assert runtime.database is None
        assert runtime.prediction_log is None
    assert runtime.model.current is None
    assert runtime.pipeline is None


async def test_components_stop_in_reverse_order_of_their_start(
    artifact_dir: Path,
    artifact: ModelArtifact,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"sqlite:///{tmp_path / 'runtime.db'}"
    await asyncio.to_thread(schema.upgrade, url)
    stopped: list[str] = []

    def record(name: str, stop: Callable[..., Coroutine[Any, Any, None]]) -> Any:
        async def recorded(self: Any) -> None:
            stopped.append(name)
            await stop(self)

        return recorded

    for owner, method, name in (
        (SecurityServices, "stop", "security"),
        (PredictionPipeline, "close", "pipeline"),
        (PredictionLogWriter, "close", "prediction log"),
        (Database, "dispose", "database"),
        (ServiceMetrics, "close", "metrics"),
    ):
        monkeypatch.setattr(owner, method, record(name, getattr(owner, method)))
    settings = _settings(
        artifact_dir,
        database_url=url,
        prediction_log_spill_path=tmp_path / "spill" / "predictions.jsonl",
        metrics_enabled=True,
    )
    async with open_runtime(settings, artifact) as runtime:
        assert runtime.database is not None
        assert runtime.prediction_log is not None
        assert runtime.metrics is not None
        assert stopped == []
    # The pipeline drains (and records) what is queued before the log's last write, and the
    # log writes before the database goes.
    assert stopped == ["security", "pipeline", "prediction log", "database", "metrics"]


async def test_a_model_swap_replaces_the_one_reference_requests_read(
    artifact_dir: Path, artifact: ModelArtifact
) -> None:
    settings = _settings(artifact_dir)
    first = ServedModel(artifact, build_pipeline(artifact, settings))
    second = ServedModel(artifact, build_pipeline(artifact, settings))
    slot = ModelSlot()
    try:
        assert slot.swap(first) is None
        assert slot.current is first
        assert slot.swap(second) is first
        assert slot.current is second
    finally:
        await first.pipeline.close()
        await second.pipeline.close()


def _body() -> dict[str, Any]:
    return {"customer_id": "8879-ZKJOF", "features": EXAMPLE_FEATURES}
