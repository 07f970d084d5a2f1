"""The raw customer reads on PostgreSQL keep the FastAPI routes' contract: credentials and the
`read` scope, the problem documents, the metrics' route label; what they do not take (a bad
parameter) FastAPI answers as before."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from churn_mlops.api.app import create_app
from churn_mlops.api.scopes import API_KEY_HEADER
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.db import schema
from churn_mlops.db.engine import Database
from churn_mlops.db.repository import CustomerRepository
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings
from tests.fixtures.lifespan import in_process_client
from tests.fixtures.security import provision_key, security_settings

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

CUSTOMERS = ("F-1", "F-2", "F-3")


async def _add_customers(url: str) -> None:
    database = Database.from_url(url)
    try:
        async with database.sessions.begin() as session:
            for external_id in CUSTOMERS:
                await CustomerRepository(session).add(external_id, dict(EXAMPLE_FEATURES))
    finally:
        await database.dispose()


@pytest.fixture(scope="module")
def database(postgres_database: str) -> str:
    schema.upgrade(postgres_database)
    asyncio.run(_add_customers(postgres_database))
    return postgres_database


@pytest.fixture(scope="module")
def keys(database: str) -> dict[str, str]:
    return {
        "read": provision_key(database, "reader", ["read"]),
        "predict": provision_key(database, "predictor", ["predict"]),
    }


@pytest.fixture
async def client(
    database: str, artifact_dir: Path, artifact: ModelArtifact
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        model_dir=artifact_dir,
        environment="test",
        database_url=database,
        prediction_log_enabled=False,
        cache_enabled=False,
        **security_settings(),
    )
    async with in_process_client(create_app(settings, artifact)) as http:
        yield http


async def test_reads_need_a_key_with_the_read_scope(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    for path in ("/customers/F-1", "/customers?limit=2"):
        anonymous = await client.get(path)
        predict_only = await client.get(path, headers={API_KEY_HEADER: keys["predict"]})
        reader = await client.get(path, headers={API_KEY_HEADER: keys["read"]})
        assert anonymous.status_code == 401, path
        assert anonymous.headers["content-type"] == "application/problem+json"
        assert predict_only.status_code == 403, path
        assert predict_only.json()["status"] == 403
        assert reader.status_code == 200, path
        assert reader.headers["content-type"] == "application/json"


async def test_answers_and_refusals_are_the_routes_own(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    headers = {API_KEY_HEADER: keys["read"]}
    detail = (await client.get("/customers/F-2", headers=headers)).json()
    page = (await client.get("/customers?limit=2", headers=headers)).json()
    rest = (await client.get(f"/customers?after={page['next_after']}", headers=headers)).json()
    unknown = await client.get("/customers/NOPE", headers=headers)
    out_of_range = await client.get("/customers/F-1?limit=0", headers=headers)
    bad_cursor = await client.get("/customers?after=x", headers=headers)

    assert detail["customer_id"] == "F-2"
    assert detail["features"] == EXAMPLE_FEATURES
    assert detail["recent_predictions"] == []
    assert [item["customer_id"] for item in page["items"] + rest["items"]] == list(CUSTOMERS)
    assert rest["next_after"] is None
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "No customer has the id 'NOPE'."
    assert out_of_range.status_code == 422  # FastAPI's own refusal
    assert out_of_range.json()["errors"][0]["field"] == "query.limit"
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["errors"][0]["field"] == "query.after"


async def test_metrics_label_the_reads_by_their_route_template(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    headers = {API_KEY_HEADER: keys["read"]}
    for external_id in CUSTOMERS:
        await client.get(f"/customers/{external_id}", headers=headers)
    exposition = (await client.get("/metrics", headers=headers)).text
    detail = [
        line
        for line in exposition.splitlines()
        if line.startswith("churn_http_requests_total") and "/customers/{customer_id}" in line
    ]
    assert detail, exposition[:2000]
    assert not any("F-1" in line for line in exposition.splitlines())
