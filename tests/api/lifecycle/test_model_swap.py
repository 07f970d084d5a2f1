"""A running app follows the registry: promotions reach it without a restart, a version that
does not load is refused and named, and `PUT /model/{alias}` verifies before it promotes."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from churn_mlops.api.app import create_app
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.model.artifact import FOREST_FILE, ModelArtifact
from churn_mlops.model.registry import CHALLENGER, LocalRegistry
from churn_mlops.observability.metrics import exported_names
from churn_mlops.settings import Settings
from tests.fixtures.lifespan import in_process_client
from tests.fixtures.security import api_key_headers

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

PREDICT = {"customer_id": "7590-VHVEG", "features": EXAMPLE_FEATURES}


async def eventually(check: Callable[[], object], seconds: float = 5.0) -> None:
    """Wait until `check()` returns truthy (a poll interval is 50 ms here)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():  # type: ignore[misc]
        assert asyncio.get_running_loop().time() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)


async def served_version(client: httpx.AsyncClient) -> str:
    response = await client.post("/predict", json=PREDICT)
    assert response.status_code == 200
    version: str = response.json()["model_version"]
    return version


def corrupt_copy(registry: LocalRegistry, version: str) -> str:
    """Register a copy of `version` under a made-up version whose forest was altered (as a
    disk fault or a hand edit would); the made-up version."""
    fake = "v" + "f" * 12
    target = registry.root / fake
    shutil.copytree(registry.root / version, target)
    forest = bytearray((target / FOREST_FILE).read_bytes())
    forest[-1] ^= 0xFF
    (target / FOREST_FILE).write_bytes(bytes(forest))
    return fake


async def test_a_promotion_in_the_registry_is_served_without_a_restart(
    registry_settings: Settings, registry: LocalRegistry, artifact: ModelArtifact, v2: str
) -> None:
    app = create_app(registry_settings)
    async with in_process_client(app, api_key_headers(app)) as client:
        assert await served_version(client) == artifact.version
        model = (await client.get("/model")).json()
        assert model["source"] == "registry"
        assert model["version"] == artifact.version

        registry.promote(v2)

        async def serves_v2() -> bool:
            return await served_version(client) == v2

        await eventually(serves_v2)
        assert (await client.get("/model")).json()["version"] == v2
        registry.rollback()
        await eventually(lambda: _serves(client, artifact.version))


async def _serves(client: httpx.AsyncClient, version: str) -> bool:
    return await served_version(client) == version


async def _refuses(client: httpx.AsyncClient, expected: bool = True) -> bool:
    """Whether `GET /model` lists a refused version (or, with `expected=False`, none)."""
    return bool((await client.get("/model")).json()["refused"]) == expected


async def test_put_champion_serves_the_version_at_once_and_names_the_previous(
    registry_settings: Settings, registry: LocalRegistry, artifact: ModelArtifact, v2: str
) -> None:
    app = create_app(registry_settings.model_copy(update={"model_poll_seconds": 60.0}))
    async with in_process_client(app, api_key_headers(app)) as client:
        response = await client.put("/model/champion", json={"version": v2})
        assert response.status_code == 200
        assert response.json() == {"alias": "champion", "version": v2, "previous": artifact.version}
        # This worker swapped before answering; the registry names it for the others.
        assert await served_version(client) == v2
        assert registry.aliases()["champion"] == v2


async def test_put_needs_the_admin_scope(registry_settings: Settings, v2: str) -> None:
    app = create_app(registry_settings)
    async with in_process_client(app, api_key_headers(app, ["read", "predict"])) as client:
        response = await client.put("/model/champion", json={"version": v2})
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("path", "body", "status", "named"),
    [
        ("/model/champion", {"version": "v000000000000"}, 404, "'v000000000000'"),
        ("/model/favourite", {"version": "v000000000000"}, 404, "Not Found"),
        ("/model/champion", {"version": 12}, 422, "version"),
        ("/model/champion", {"version": "v1", "extra": True}, 422, "extra"),
    ],
)
async def test_bad_promotions_are_problems_naming_what_is_wrong(
    registry_settings: Settings,
    artifact: ModelArtifact,
    path: str,
    body: dict[str, object],
    status: int,
    named: str,
) -> None:
    app = create_app(registry_settings)
    async with in_process_client(app, api_key_headers(app)) as client:
        response = await client.put(path, json=body)
        assert response.status_code == status
        assert response.headers["content-type"] == "application/problem+json"
        assert named in response.text
        assert await served_version(client) == artifact.version


async def test_a_corrupt_version_put_is_refused_and_nothing_changes(
    registry_settings: Settings, registry: LocalRegistry, artifact: ModelArtifact
) -> None:
    fake = corrupt_copy(registry, artifact.version)
    app = create_app(registry_settings)
    async with in_process_client(app, api_key_headers(app)) as client:
        response = await client.put("/model/champion", json={"version": fake})
        assert response.status_code == 422
        assert fake in response.json()["detail"]
        assert registry.aliases()["champion"] == artifact.version
        assert await served_version(client) == artifact.version


async def test_a_corrupt_version_promoted_elsewhere_is_refused_shown_and_measured(
    registry_settings: Settings, registry: LocalRegistry, artifact: ModelArtifact, v2: str
) -> None:
    fake = corrupt_copy(registry, artifact.version)
    app = create_app(registry_settings)
    async with in_process_client(app, api_key_headers(app)) as client:
        registry.promote(fake)

        await eventually(lambda: _refuses(client))
        model = (await client.get("/model")).json()
        assert model["version"] == artifact.version  # the old model keeps serving
        (entry,) = model["refused"]
        assert entry["alias"] == "champion"
        assert entry["version"] == fake
        assert entry["reason"] == "modified"
        assert "modified" in entry["detail"]
        assert await served_version(client) == artifact.version
        metrics = (await client.get("/metrics")).text
        assert 'churn_model_refused{alias="champion",' in metrics
        assert f'version="{fake}"' in metrics
        assert "churn_model_serving" in exported_names(metrics.encode())

        # The next promotion of a good version is served, and the refusal is cleared.
        registry.promote(v2)
        await eventually(lambda: _serves(client, v2))
        assert (await client.get("/model")).json()["refused"] == []


async def test_a_fixed_model_directory_follows_no_alias(
    artifact_dir: Path, registry_settings: Settings, v2: str
) -> None:
    settings = registry_settings.model_copy(update={"model_dir": artifact_dir})
    settings.model_fields_set.add("model_dir")
    app = create_app(settings)
    async with in_process_client(app, api_key_headers(app)) as client:
        assert (await client.get("/model")).json()["source"] == "directory"
        response = await client.put("/model/champion", json={"version": v2})
    assert response.status_code == 409
    assert "--model-dir" in response.json()["detail"]


async def test_the_challenger_alias_is_shown_and_cleared(
    registry_settings: Settings, registry: LocalRegistry, v2: str
) -> None:
    # Shadow mode records into the prediction log: without a database it is not scored, so
    # this uses canary mode, which needs none.
    settings = registry_settings.model_copy(update={"challenger_mode": "canary"})
    app = create_app(settings)
    async with in_process_client(app, api_key_headers(app)) as client:
        response = await client.put("/model/challenger", json={"version": v2})
        assert response.status_code == 200
        assert response.json()["previous"] is None
        challenger = (await client.get("/model")).json()["challenger"]
        assert challenger == {"version": v2, "mode": "canary", "canary_percent": 10.0}

        response = await client.delete("/model/challenger")
        assert response.status_code == 200
        assert response.json() == {"alias": "challenger", "version": None, "previous": v2}
        assert (await client.get("/model")).json()["challenger"] is None
        assert CHALLENGER not in registry.aliases()
        assert (await client.delete("/model/challenger")).status_code == 404


async def test_a_challenger_promoted_to_champion_stops_being_its_own_challenger(
    registry_settings: Settings, artifact: ModelArtifact, v2: str
) -> None:
    settings = registry_settings.model_copy(update={"challenger_mode": "canary"})
    app = create_app(settings)
    async with in_process_client(app, api_key_headers(app)) as client:
        assert (await client.put("/model/challenger", json={"version": v2})).status_code == 200
        assert (await client.put("/model/champion", json={"version": v2})).status_code == 200
        model = (await client.get("/model")).json()
        assert model["version"] == v2
        assert model["challenger"] is None
        metrics = (await client.get("/metrics")).text
    assert f'churn_model_serving{{alias="champion",version="{v2}"}} 1.0' in metrics
    assert f'churn_model_serving{{alias="champion",version="{artifact.version}"}} 0.0' in metrics
    assert f'churn_model_serving{{alias="challenger",version="{v2}"}} 0.0' in metrics


async def test_a_refusal_is_logged_once_however_many_polls_see_it(
    registry_settings: Settings,
    registry: LocalRegistry,
    artifact: ModelArtifact,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = corrupt_copy(registry, artifact.version)
    app = create_app(registry_settings)
    async with in_process_client(app, api_key_headers(app)) as client:
        registry.promote(fake)

        await eventually(lambda: _refuses(client))
        await asyncio.sleep(0.5)  # ten more polls of the same alias
    said = [r for r in caplog.records if r.getMessage().startswith("refusing model version")]
    assert len(said) == 1
    assert fake in said[0].getMessage()


async def test_a_rollback_to_the_served_version_ends_a_refusal(
    registry_settings: Settings, registry: LocalRegistry, artifact: ModelArtifact
) -> None:
    fake = corrupt_copy(registry, artifact.version)
    app = create_app(registry_settings)
    async with in_process_client(app, api_key_headers(app)) as client:
        registry.promote(fake)

        await eventually(lambda: _refuses(client))
        registry.rollback()  # the alias names the version still served

        await eventually(lambda: _refuses(client, expected=False))
        metrics = (await client.get("/metrics")).text
    assert (
        f'churn_model_refused{{alias="champion",reason="modified",version="{fake}"}} 0.0' in metrics
    )
