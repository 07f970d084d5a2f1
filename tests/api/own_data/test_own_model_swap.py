"""A registry promotion to a model trained on other columns: the running app's requests, its
OpenAPI document and `GET /model/schema` follow it without a restart, and back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from churn_mlops.api.app import create_app
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.registry import LocalRegistry
from churn_mlops.settings import Settings
from tests.fixtures.lifespan import in_process_client
from tests.fixtures.security import api_key_headers, security_settings

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


async def _documented_features(client: httpx.AsyncClient) -> list[str]:
    document = (await client.get("/openapi.json")).json()
    return list(document["components"]["schemas"]["CustomerFeatures"]["properties"])


async def _eventually_serves(client: httpx.AsyncClient, version: str, body: Any) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        response = await client.post("/predict", json=body)
        if response.status_code == 200 and response.json()["model_version"] == version:
            return
        assert asyncio.get_running_loop().time() < deadline, response.text
        await asyncio.sleep(0.02)


def _both_registered(
    tmp_path: Path, artifact_dir: Path, own_artifact_dir: Path, champion: ModelArtifact
) -> LocalRegistry:
    """A registry holding the Telco model and the other-columns one, `champion` promoted."""
    registry = LocalRegistry(tmp_path / "models")
    registry.register(artifact_dir)
    registry.register(own_artifact_dir)
    registry.promote(champion.version)
    return registry


def _settings(registry: LocalRegistry, **extra: Any) -> Settings:
    return Settings(
        model_registry_dir=registry.root,
        model_poll_seconds=0.05,
        environment="test",
        **extra,
        **security_settings(),
    )


async def test_a_promotion_to_other_columns_swaps_decoder_openapi_and_schema(
    tmp_path: Path,
    artifact_dir: Path,
    artifact: ModelArtifact,
    own_artifact_dir: Path,
    own_artifact: ModelArtifact,
) -> None:
    registry = _both_registered(tmp_path, artifact_dir, own_artifact_dir, artifact)
    settings = _settings(registry)
    telco_body = {"features": EXAMPLE_FEATURES}
    own_body = {"features": dict(own_artifact.schema.example)}
    app = create_app(settings)
    async with in_process_client(app, api_key_headers(app)) as client:
        assert "tenure" in await _documented_features(client)
        assert (await client.post("/predict", json=own_body)).status_code == 422

        registry.promote(own_artifact.version)
        await _eventually_serves(client, own_artifact.version, own_body)

        assert await _documented_features(client) == list(own_artifact.schema.names)
        schema = (await client.get("/model/schema")).json()
        assert schema["sha256"] == own_artifact.schema.sha256
        refused = await client.post("/predict/batch", json=[telco_body])
        assert refused.status_code == 422
        assert "[0].features.region" in {e["field"] for e in refused.json()["errors"]}

        registry.rollback()
        await _eventually_serves(client, artifact.version, telco_body)
        assert "tenure" in await _documented_features(client)
        assert (await client.get("/model/schema")).json()["sha256"] == artifact.schema.sha256


async def _refused(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        refused: list[dict[str, Any]] = (await client.get("/model")).json()["refused"]
        if refused or asyncio.get_running_loop().time() > deadline:
            return refused
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("mode", ["shadow", "canary"])
async def test_a_challenger_reading_other_columns_is_refused_beside_the_champion(
    tmp_path: Path,
    artifact_dir: Path,
    artifact: ModelArtifact,
    own_artifact_dir: Path,
    own_artifact: ModelArtifact,
    mode: str,
) -> None:
    # A challenger scores the rows decoded for the champion: rows of other columns would be
    # scored wrong, so such a challenger is refused, and the champion answers every request.
    registry = _both_registered(tmp_path, artifact_dir, own_artifact_dir, artifact)
    registry.promote(own_artifact.version, "challenger")
    settings = _settings(registry, challenger_mode=mode, canary_percent=50)
    app = create_app(settings)
    async with in_process_client(app, api_key_headers(app)) as client:
        (refused,) = await _refused(client)
        assert (refused["alias"], refused["version"]) == ("challenger", own_artifact.version)
        assert refused["reason"] == "features"
        assert artifact.version in refused["detail"]
        model = (await client.get("/model")).json()
        assert model["challenger"] is None
        for _ in range(20):
            answer = await client.post("/predict", json={"features": EXAMPLE_FEATURES})
            assert answer.json()["model_version"] == artifact.version

        # Promoted to champion, the model is served (its own decoder) and the refusal ends.
        registry.promote(own_artifact.version)
        own_body = {"features": dict(own_artifact.schema.example)}
        await _eventually_serves(client, own_artifact.version, own_body)
        assert (await client.get("/model")).json()["refused"] == []
