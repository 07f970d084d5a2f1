"""The customer and history endpoints on a real app over a real database (SQLite and
PostgreSQL), including how many statements each one sends."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from benchmarks.servers import free_port
from churn_mlops.api.app import ChurnAPI, create_app
from churn_mlops.data.telco_example import EXAMPLE_CUSTOMER_ID, EXAMPLE_FEATURES
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Customer, Prediction
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings
from tests.integration.db.conftest import QueryCounter

pytestmark = pytest.mark.timeout(120)

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _settings(artifact_dir: Path, database_url: str) -> Settings:
    return Settings(
        model_dir=artifact_dir,
        environment="test",
        auth_enabled=False,
        prediction_log_enabled=False,
        database_url=database_url,
    )


@dataclass
class Api:
    client: TestClient
    app: ChurnAPI
    url: str

    def load(self, customers: int, predictions_each: int = 0) -> list[str]:
        """Insert customers C-0000.. with `predictions_each` predictions each, minutes apart."""
        return asyncio.run(_load(self.url, customers, predictions_each))

    def counter(self) -> QueryCounter:
        database: Database = self.app.runtime.database
        return QueryCounter(database.engine, database.reads)


async def _load(url: str, customers: int, predictions_each: int) -> list[str]:
    database = Database.from_url(url)
    ids = [f"C-{n:04d}" for n in range(customers)]
    try:
        async with database.sessions.begin() as session:
            rows = [Customer(external_id=i, **EXAMPLE_FEATURES) for i in ids]
            session.add_all(rows)
            await session.flush()
            session.add_all(
                Prediction(
                    id=uuid.uuid4(),
                    customer_id=row.id,
                    external_customer_id=row.external_id,
                    model_version="v-test",
                    probability=(minute + 1) / 100,
                    will_churn=False,
                    cached=False,
                    latency_ms=1.0,
                    created_at=T0 + timedelta(minutes=minute),
                )
                for row in rows
                for minute in range(predictions_each)
            )
    finally:
        await database.dispose()
    return ids


async def _empty(url: str) -> None:
    database = Database.from_url(url)
    try:
        async with database.engine.begin() as connection:
            await connection.execute(delete(Prediction))
            await connection.execute(delete(Customer))
    finally:
        await database.dispose()


@pytest.fixture
def api(migrated_database_url: str, artifact_dir: Path, artifact: ModelArtifact) -> Iterator[Api]:
    asyncio.run(_empty(migrated_database_url))
    app = create_app(_settings(artifact_dir, migrated_database_url), artifact)
    with TestClient(app) as client:
        yield Api(client, app, migrated_database_url)


def test_get_customer_returns_features_and_newest_predictions(api: Api) -> None:
    [customer_id] = api.load(1, predictions_each=5)
    response = api.client.get(f"/customers/{customer_id}", params={"limit": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["customer_id"] == customer_id
    assert body["features"] == EXAMPLE_FEATURES
    recent = body["recent_predictions"]
    assert [p["churn_probability"] for p in recent] == [0.05, 0.04, 0.03]
    assert recent[0]["created_at"] == "2026-03-01T00:04:00Z"
    assert {p["customer_id"] for p in recent} == {customer_id}


def test_get_customer_answers_404_problem_for_an_unknown_id(api: Api) -> None:
    response = api.client.get("/customers/NOPE-0000")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "No customer has the id 'NOPE-0000'.",
    }


def test_get_customer_refuses_a_limit_out_of_range(api: Api) -> None:
    response = api.client.get(f"/customers/{EXAMPLE_CUSTOMER_ID}", params={"limit": 0})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.limit"


def test_get_customer_sends_the_same_statements_for_1_and_50_predictions(api: Api) -> None:
    few, many = api.load(2, predictions_each=1)[0], "C-0001"
    asyncio.run(_load_more(api.url, many, 49))
    api.client.get(f"/customers/{few}")  # first connection: dialect set-up queries
    counter = api.counter()
    with counter.counting() as one:
        one_body = api.client.get(f"/customers/{few}", params={"limit": 100}).json()
    with counter.counting() as fifty:
        fifty_body = api.client.get(f"/customers/{many}", params={"limit": 100}).json()
    assert len(one_body["recent_predictions"]) == 1
    assert len(fifty_body["recent_predictions"]) == 50
    # PostgreSQL: one statement on the driver's connection; SQLite: the ORM's two.
    assert len(one) == len(fifty) == (2 if api.url.startswith("sqlite") else 1)


async def _load_more(url: str, external_id: str, count: int) -> None:
    database = Database.from_url(url)
    try:
        async with database.sessions.begin() as session:
            customer = await session.scalar(
                select(Customer.id).where(Customer.external_id == external_id)
            )
            assert customer is not None
            session.add_all(
                Prediction(
                    id=uuid.uuid4(),
                    customer_id=customer,
                    external_customer_id=external_id,
                    model_version="v-test",
                    probability=0.5,
                    will_churn=True,
                    cached=False,
                    latency_ms=None,
                    created_at=T0 - timedelta(minutes=n + 1),
                )
                for n in range(count)
            )
    finally:
        await database.dispose()


def test_list_customers_sends_one_statement_for_1_or_50_customers(api: Api) -> None:
    api.load(50, predictions_each=3)
    api.client.get("/customers?limit=1")  # first connection: dialect set-up queries
    counter = api.counter()
    with counter.counting() as one:
        page_of_one = api.client.get("/customers", params={"limit": 1}).json()
    with counter.counting() as fifty:
        page_of_fifty = api.client.get("/customers", params={"limit": 50}).json()
    assert len(page_of_one["items"]) == 1
    assert len(page_of_fifty["items"]) == 50
    assert len(one) == len(fifty) == 1
    assert {item["latest_prediction"]["churn_probability"] for item in page_of_fifty["items"]} == {
        0.03
    }


def test_list_customers_pages_through_everyone_once(api: Api) -> None:
    ids = api.load(7)
    seen: list[str] = []
    after: int | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3} if after is None else {"limit": 3, "after": after}
        body = api.client.get("/customers", params=params).json()
        seen += [item["customer_id"] for item in body["items"]]
        pages += 1
        after = body["next_after"]
        if after is None:
            break
    assert seen == ids
    assert pages == 3
    assert all(item["latest_prediction"] is None for item in body["items"])


def test_customer_endpoints_refuse_ids_and_cursors_the_database_cannot_take(api: Api) -> None:
    control = api.client.get("/customers/A%00B")
    history = api.client.get("/predictions", params={"customer_id": "A\x01B"})
    cursor = api.client.get("/customers", params={"after": 2**63})
    assert [r.status_code for r in (control, history, cursor)] == [422, 422, 422]
    assert control.json()["errors"][0]["field"] == "path.customer_id"
    assert history.json()["errors"][0]["field"] == "query.customer_id"
    assert cursor.json()["errors"][0]["field"] == "query.after"


def test_predict_customer_scores_the_stored_features_like_predict(api: Api) -> None:
    [customer_id] = api.load(1)
    stored = api.client.post(f"/customers/{customer_id}/predict")
    direct = api.client.post("/predict", json={"features": EXAMPLE_FEATURES})
    assert stored.status_code == 200
    answer = stored.json()
    assert answer["customer_id"] == customer_id
    assert answer["cached"] is False
    # Same encoded row, same cache key: /predict is answered from the cache entry it made.
    assert direct.json() == {**answer, "customer_id": None, "cached": True}


def test_predict_customer_answers_404_for_an_unknown_id(api: Api) -> None:
    response = api.client.post("/customers/NOPE-0000/predict")
    assert response.status_code == 404
    assert response.json()["detail"] == "No customer has the id 'NOPE-0000'."


def test_predictions_filters_by_customer_and_since(api: Api) -> None:
    first, _ = api.load(2, predictions_each=4)
    of_first = api.client.get("/predictions", params={"customer_id": first}).json()["items"]
    assert [(p["customer_id"], p["churn_probability"]) for p in of_first] == [
        (first, 0.04),
        (first, 0.03),
        (first, 0.02),
        (first, 0.01),
    ]
    since = api.client.get(
        "/predictions", params={"since": "2026-03-01T02:02:00+02:00", "limit": 10}
    ).json()["items"]
    assert [p["churn_probability"] for p in since] == [0.04, 0.04, 0.03, 0.03]
    unknown = api.client.get("/predictions", params={"customer_id": "NOPE-0000"})
    assert unknown.status_code == 404
    too_early = api.client.get("/predictions", params={"since": "0001-01-01T00:00:00+01:00"})
    assert too_early.status_code == 422
    assert too_early.json()["errors"] == [
        {"field": "query.since", "reason": "Input is out of range once converted to UTC"}
    ]
    invalid = api.client.get("/predictions", params={"since": "yesterday"})
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["field"] == "query.since"


def test_customer_endpoints_answer_503_without_a_database(
    artifact_dir: Path, artifact: ModelArtifact
) -> None:
    with TestClient(create_app(_settings(artifact_dir, ""), artifact)) as client:
        customers = client.get("/customers")
        prediction = client.post("/predict", json={"features": EXAMPLE_FEATURES})
        ready = client.get("/health/ready").json()
    assert customers.status_code == 503
    assert customers.json()["detail"] == "The database is not configured (CHURN_DATABASE_URL)."
    assert prediction.status_code == 200
    assert ready["database"] == "disabled"


def test_unreachable_database_degrades_only_the_customer_endpoints(
    artifact_dir: Path, artifact: ModelArtifact
) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/churn"
    with TestClient(create_app(_settings(artifact_dir, nowhere), artifact)) as client:
        customer = client.get(f"/customers/{EXAMPLE_CUSTOMER_ID}")
        prediction = client.post("/predict", json={"features": EXAMPLE_FEATURES})
        ready = client.get("/health/ready")
    assert customer.status_code == 503
    assert customer.json()["detail"] == "The database does not answer; retry in a moment."
    assert prediction.status_code == 200
    assert ready.status_code == 200
    assert ready.json()["database"] == "degraded"
