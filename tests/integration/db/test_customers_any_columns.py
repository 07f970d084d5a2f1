"""Customers with any columns, on SQLite and PostgreSQL: the reads answer Telco customers byte for
byte as the columns did (the stored JSON spliced in on PostgreSQL), `POST /customers` validates
against the served model's schema (Telco and the generated non-Telco one), stored features
get the served schema's defaults, and a model that could not score the stored customers is not
promoted."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from churn_mlops.api.app import create_app
from churn_mlops.api.customer_fastpath import detail_bytes, page_bytes
from churn_mlops.core.errors import Conflict
from churn_mlops.core.schema import FeatureSchema
from churn_mlops.data import telco_schema
from churn_mlops.data.telco_example import EXAMPLE_FEATURES, FEATURE_NAMES
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Customer
from churn_mlops.db.repository import CustomerRepository
from churn_mlops.db.schema import upgrade
from churn_mlops.db.stored_features import (
    MissingStoredFeatures,
    check_database_promotable,
    with_defaults,
)
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.runtime import Runtime
from churn_mlops.settings import Settings
from tests.fixtures.own_data import OWN_FEATURES

pytestmark = pytest.mark.timeout(120)

OWN_ROW = {
    "region": "region-07",
    "plan": "pro",
    "seats": 12,
    "monthly_spend": 250.5,
    "logins_last30d": None,
    "has_support_contract": True,
}


def _runtime(database: Database) -> Runtime:
    return cast(Runtime, SimpleNamespace(database=database))


def _as_the_columns_gave(features: dict[str, Any]) -> bytes:
    """What the 19 typed columns made of a customer's features: orjson of them in order."""
    return orjson.dumps({name: features[name] for name in FEATURE_NAMES})


@pytest.mark.anyio
async def test_reads_answer_telco_features_byte_for_byte_as_the_columns_did(
    database: Database,
) -> None:
    customers = {
        "B-0": dict(EXAMPLE_FEATURES),
        "B-1": {**EXAMPLE_FEATURES, "monthly_charges": 20.0, "total_charges": 3320.75},
        "B-2": {**EXAMPLE_FEATURES, "tenure": 0, "total_charges": None},
    }
    async with database.sessions.begin() as session:
        for external_id, features in customers.items():
            await CustomerRepository(session).add(external_id, features)
    for external_id, features in customers.items():
        detail = await detail_bytes(_runtime(database), external_id, 10)
        assert b'"features":' + _as_the_columns_gave(features) + b',"created_at"' in detail
    page = await page_bytes(_runtime(database), None, 10)
    for features in customers.values():
        assert b'"features":' + _as_the_columns_gave(features) + b',"created_at"' in page
    assert b'"monthly_charges":20.0,"total_charges":3320.75}' in page


@pytest.fixture(scope="module")
def migrated_postgres_url(postgres_database: str) -> str:
    """PostgreSQL only (SQLite reads through the ORM, not the raw reads), migrated to head."""
    upgrade(postgres_database)
    return postgres_database


@pytest.mark.anyio
async def test_postgres_reads_splice_the_stored_json_without_decoding_it(
    migrated_postgres_url: str,
) -> None:
    database = Database.from_url(migrated_postgres_url)
    try:
        await _splice_check(database)
    finally:
        await database.dispose()


async def _splice_check(database: Database) -> None:
    assert database.reads is not None
    stored = '{"tenure":1, "gender":"Male"}'  # text no encoder would write: spacing, order
    async with database.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO customers (external_id, features, schema_sha256) "
                "VALUES ('S-1', CAST(:f AS json), 'x')"
            ),
            {"f": stored},
        )
    assert b'"features":' + stored.encode() + b"," in await detail_bytes(
        _runtime(database), "S-1", 10
    )
    assert b'"features":' + stored.encode() + b"," in await page_bytes(_runtime(database), None, 10)


def test_stored_features_lacking_a_feature_get_its_schema_default() -> None:
    schema = telco_schema()
    gender = dataclasses.replace(schema.spec("gender"), default="Female")
    with_default = dataclasses.replace(
        schema, features=tuple(gender if s.name == "gender" else s for s in schema.features)
    )
    stored = {k: v for k, v in EXAMPLE_FEATURES.items() if k != "gender"}
    assert with_defaults(stored, with_default)["gender"] == "Female"
    assert with_defaults(EXAMPLE_FEATURES, with_default) == EXAMPLE_FEATURES
    with pytest.raises(MissingStoredFeatures, match="reads gender"):
        with_defaults(stored, schema)


def _with_defaults(schema: FeatureSchema, values: dict[str, Any]) -> FeatureSchema:
    features = tuple(
        dataclasses.replace(spec, default=values[spec.name]) if spec.name in values else spec
        for spec in schema.features
    )
    return dataclasses.replace(schema, features=features)


@pytest.mark.anyio
async def test_promotion_is_refused_naming_the_columns_stored_customers_lack(
    database: Database, own_artifact: ModelArtifact
) -> None:
    async with database.sessions.begin() as session:
        await CustomerRepository(session).add("T-1", dict(EXAMPLE_FEATURES))
    with pytest.raises(MissingStoredFeatures) as refused:
        await check_database_promotable(database, own_artifact.schema, "own-1")
    assert isinstance(refused.value, Conflict)
    # The nullable ones (plan, logins_last30d) are scored as missing: not refused.
    assert refused.value.columns == ["region", "seats", "monthly_spend", "has_support_contract"]
    assert "model own-1 reads region, seats, monthly_spend" in refused.value.detail

    # Defaults for every column the Telco customers lack: it can score them.
    defaults = {**{name: OWN_ROW[name] for name in OWN_FEATURES}, "logins_last30d": 5}
    await check_database_promotable(database, _with_defaults(own_artifact.schema, defaults))
    # A Telco model (the stored customers' own features) is always promotable.
    await check_database_promotable(database, telco_schema())


@pytest.mark.anyio
async def test_promotion_check_reads_every_stored_schema(
    database: Database, own_artifact: ModelArtifact
) -> None:
    async with database.sessions.begin() as session:
        repository = CustomerRepository(session)
        await repository.add("T-1", dict(EXAMPLE_FEATURES))
        await repository.add("O-1", OWN_ROW, own_artifact.schema.sha256)
    # The Telco model: the own customers lack all 19 of its features (total_charges, nullable,
    # would be scored as missing).
    with pytest.raises(MissingStoredFeatures) as refused:
        await check_database_promotable(database, telco_schema())
    assert refused.value.columns == [n for n in FEATURE_NAMES if n != "total_charges"]
    # No database customer at all: nothing to refuse.
    async with database.engine.begin() as connection:
        await connection.execute(text("DELETE FROM customers"))
    await check_database_promotable(database, own_artifact.schema)


# POST /customers over HTTP, with the Telco model and with the non-Telco one served.


def _settings(artifact_dir: Path, database_url: str) -> Settings:
    return Settings(
        model_dir=artifact_dir,
        environment="test",
        auth_enabled=False,
        prediction_log_enabled=False,
        database_url=database_url,
    )


async def _empty(url: str) -> None:
    database = Database.from_url(url)
    try:
        async with database.engine.begin() as connection:
            await connection.execute(text("DELETE FROM predictions"))
            await connection.execute(text("DELETE FROM customers"))
    finally:
        await database.dispose()


async def _stored(url: str, external_id: str) -> Customer:
    database = Database.from_url(url)
    try:
        async with database.sessions() as session:
            return await CustomerRepository(session).get(external_id)
    finally:
        await database.dispose()


@pytest.fixture
def telco_client(
    migrated_database_url: str, artifact_dir: Path, artifact: ModelArtifact
) -> Iterator[TestClient]:
    asyncio.run(_empty(migrated_database_url))
    app = create_app(_settings(artifact_dir, migrated_database_url), artifact)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def own_client(
    migrated_database_url: str, own_artifact_dir: Path, own_artifact: ModelArtifact
) -> Iterator[TestClient]:
    asyncio.run(_empty(migrated_database_url))
    app = create_app(_settings(own_artifact_dir, migrated_database_url), own_artifact)
    with TestClient(app) as client:
        yield client


def test_post_customer_stores_telco_features_and_reads_them_back(
    telco_client: TestClient, migrated_database_url: str, artifact: ModelArtifact
) -> None:
    body = {"customer_id": "P-1", "features": EXAMPLE_FEATURES}
    created = telco_client.post("/customers", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["created"] is True
    assert created.json()["features"] == EXAMPLE_FEATURES
    again = telco_client.post(
        "/customers", json={"customer_id": "P-1", "features": {**EXAMPLE_FEATURES, "tenure": 3}}
    )
    assert again.status_code == 200
    assert again.json()["created"] is False
    read = telco_client.get("/customers/P-1")
    assert read.json()["features"] == {**EXAMPLE_FEATURES, "tenure": 3}
    stored = asyncio.run(_stored(migrated_database_url, "P-1"))
    assert stored.schema_sha256 == artifact.schema.sha256 == telco_schema().sha256


def test_post_customer_refuses_fields_as_predict_does(telco_client: TestClient) -> None:
    features = {**EXAMPLE_FEATURES, "tenure": -1, "contract": "Weekly", "extra": 1}
    del features["gender"]
    stored = telco_client.post("/customers", json={"customer_id": "P-2", "features": features})
    predicted = telco_client.post("/predict", json={"customer_id": "P-2", "features": features})
    assert stored.status_code == 422
    assert stored.headers["content-type"] == "application/problem+json"
    fields = {error["field"] for error in stored.json()["errors"]}
    assert fields == {"features.tenure", "features.contract", "features.extra", "features.gender"}
    assert stored.json()["errors"] == predicted.json()["errors"]
    assert telco_client.get("/customers/P-2").status_code == 404


def test_post_customer_validates_against_the_served_non_telco_schema(
    own_client: TestClient, migrated_database_url: str, own_artifact: ModelArtifact
) -> None:
    created = own_client.post("/customers", json={"customer_id": "ACC-1", "features": OWN_ROW})
    assert created.status_code == 201, created.text
    assert list(created.json()["features"]) == list(OWN_FEATURES)
    stored = asyncio.run(_stored(migrated_database_url, "ACC-1"))
    assert stored.schema_sha256 == own_artifact.schema.sha256
    assert own_client.get("/customers/ACC-1").json()["features"] == OWN_ROW

    bad = {**OWN_ROW, "region": "region-99", "seats": 0, "monthly_spend": "12", "tenure": 1}
    refused = own_client.post("/customers", json={"customer_id": "ACC-2", "features": bad})
    assert refused.status_code == 422
    assert {error["field"] for error in refused.json()["errors"]} == {
        "features.region",
        "features.seats",
        "features.monthly_spend",
        "features.tenure",
    }
    telco = own_client.post(
        "/customers", json={"customer_id": "ACC-3", "features": EXAMPLE_FEATURES}
    )
    assert telco.status_code == 422
