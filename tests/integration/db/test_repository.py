from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Prediction
from churn_mlops.db.repository import (
    CustomerNotFound,
    CustomerRepository,
    PredictionRepository,
    customer_features,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def prediction(customer_id: int | None, external_id: str | None, minutes: int) -> Prediction:
    return Prediction(
        id=uuid.uuid4(),
        customer_id=customer_id,
        external_customer_id=external_id,
        model_version="v-test",
        probability=minutes / 1000,
        will_churn=False,
        cached=False,
        latency_ms=1.5,
        created_at=T0 + timedelta(minutes=minutes),
    )


async def test_create_read_update_delete_a_customer(database: Database) -> None:
    async with database.sessions.begin() as session:
        created = await CustomerRepository(session).add("0001-TEST", dict(EXAMPLE_FEATURES))
        assert created.id is not None
    async with database.sessions() as session:
        found = await CustomerRepository(session).get("0001-TEST")
        assert customer_features(found) == EXAMPLE_FEATURES
        assert found.created_at.tzinfo is not None
    async with database.sessions.begin() as session:
        await CustomerRepository(session).update_features(
            "0001-TEST", {"tenure": 42, "total_charges": None}
        )
    async with database.sessions() as session:
        updated = await CustomerRepository(session).get("0001-TEST")
        assert (updated.tenure, updated.total_charges) == (42, None)
        assert updated.updated_at >= updated.created_at
    async with database.sessions.begin() as session:
        await CustomerRepository(session).delete("0001-TEST")
    async with database.sessions() as session:
        with pytest.raises(CustomerNotFound, match="0001-TEST"):
            await CustomerRepository(session).get("0001-TEST")


async def test_update_refuses_a_name_that_is_not_a_feature(database: Database) -> None:
    async with database.sessions.begin() as session:
        repository = CustomerRepository(session)
        await repository.add("0002-TEST", dict(EXAMPLE_FEATURES))
        with pytest.raises(ValueError, match="external_id is not a customer feature"):
            await repository.update_features("0002-TEST", {"external_id": "other"})


async def test_recent_predictions_are_newest_first_and_limited(database: Database) -> None:
    async with database.sessions.begin() as session:
        customer = await CustomerRepository(session).add("0003-TEST", dict(EXAMPLE_FEATURES))
        for minutes in (5, 1, 9, 3):
            await PredictionRepository(session).add(prediction(customer.id, "0003-TEST", minutes))
    async with database.sessions() as session:
        found = await CustomerRepository(session).with_recent_predictions("0003-TEST", limit=3)
    assert [p.created_at for p in found.predictions] == [
        T0 + timedelta(minutes=m) for m in (9, 5, 3)
    ]
    assert all(p.created_at.tzinfo is not None for p in found.predictions)


async def test_deleting_a_customer_keeps_its_predictions_anonymous(database: Database) -> None:
    async with database.sessions.begin() as session:
        customer = await CustomerRepository(session).add("0004-TEST", dict(EXAMPLE_FEATURES))
        await PredictionRepository(session).add(prediction(customer.id, "0004-TEST", 1))
    async with database.sessions.begin() as session:
        await CustomerRepository(session).delete("0004-TEST")
    async with database.sessions() as session:
        history = await PredictionRepository(session).recent()
    assert [(p.customer_id, p.external_customer_id) for p in history] == [(None, "0004-TEST")]


async def test_page_gives_each_customer_its_latest_prediction(database: Database) -> None:
    async with database.sessions.begin() as session:
        customers = CustomerRepository(session)
        first = await customers.add("A-1", dict(EXAMPLE_FEATURES))
        second = await customers.add("A-2", dict(EXAMPLE_FEATURES))
        await customers.add("A-3", dict(EXAMPLE_FEATURES))
        for minutes in (1, 7, 4):
            await PredictionRepository(session).add(prediction(first.id, "A-1", minutes))
        await PredictionRepository(session).add(prediction(second.id, "A-2", 2))
        await PredictionRepository(session).add(prediction(None, None, 99))
    async with database.sessions() as session:
        page = await CustomerRepository(session).page(after=None, limit=2)
        rest = await CustomerRepository(session).page(after=page[-1].customer.id, limit=2)
    assert [(row.customer.external_id, row.latest and row.latest.created_at) for row in page] == [
        ("A-1", T0 + timedelta(minutes=7)),
        ("A-2", T0 + timedelta(minutes=2)),
    ]
    assert [(row.customer.external_id, row.latest) for row in rest] == [("A-3", None)]


async def test_recent_filters_by_customer_and_since(database: Database) -> None:
    async with database.sessions.begin() as session:
        customer = await CustomerRepository(session).add("B-1", dict(EXAMPLE_FEATURES))
        for minutes in (1, 2, 3):
            await PredictionRepository(session).add(prediction(customer.id, "B-1", minutes))
        await PredictionRepository(session).add(prediction(None, None, 10))
    since = T0 + timedelta(minutes=2)
    async with database.sessions() as session:
        history = PredictionRepository(session)
        of_customer = await history.recent(customer_external_id="B-1")
        recent = await history.recent(since=since)
        both = await history.recent(customer_external_id="B-1", since=since, limit=1)
        # The same instant in another zone selects the same rows.
        elsewhere = await history.recent(since=since.astimezone(timezone(timedelta(hours=2))))
        with pytest.raises(CustomerNotFound):
            await history.recent(customer_external_id="NOBODY")
    assert [p.probability for p in of_customer] == [0.003, 0.002, 0.001]
    assert [p.probability for p in recent] == [0.010, 0.003, 0.002]
    assert [p.probability for p in both] == [0.003]
    assert [p.probability for p in elsewhere] == [0.010, 0.003, 0.002]
