"""The read endpoints' JSON, made from rows without pydantic, says what the documented response
models say of the same rows, on SQLite (through the ORM) and on PostgreSQL (one statement on
the read pool). Their plans on PostgreSQL: test_explain.py."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest

from churn_mlops.api.customer_fastpath import detail_bytes, page_bytes
from churn_mlops.api.routes.customers import prediction_record
from churn_mlops.api.schemas.customers import CustomerDetail, CustomerPage, CustomerSummary
from churn_mlops.core.errors import NotFound
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Customer, Prediction
from churn_mlops.db.repository import CustomerRepository, customer_features
from churn_mlops.runtime import Runtime

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

T0 = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
# Values whose JSON forms differ between encoders if any differ: tiny and whole floats, a
# timestamp without microseconds, an anonymous and a timed-out (null latency) prediction.
PROBABILITIES = (1.5e-05, 0.25, 1.0, 0.3333333333333333)


def _prediction(customer: Customer, n: int) -> Prediction:
    return Prediction(
        id=uuid.uuid4(),
        customer_id=customer.id,
        external_customer_id=None if n == 2 else customer.external_id,
        model_version=f"v-{n}",
        probability=PROBABILITIES[n % len(PROBABILITIES)],
        will_churn=n % 2 == 0,
        cached=n == 1,
        latency_ms=None if n == 3 else 0.75 * n,
        created_at=(T0 if n else T0.replace(microsecond=0)) + timedelta(minutes=n),
    )


async def _store(database: Database) -> None:
    """Three customers: `R-0` with 5 predictions, `R-1` with none, `R-2` with 1 and no charges."""
    async with database.sessions.begin() as session:
        repository = CustomerRepository(session)
        first = await repository.add("R-0", dict(EXAMPLE_FEATURES))
        await repository.add("R-1", {**EXAMPLE_FEATURES, "tenure": 0, "monthly_charges": 20.0})
        third = await repository.add("R-2", {**EXAMPLE_FEATURES, "total_charges": None})
        session.add_all([_prediction(first, n) for n in range(5)] + [_prediction(third, 4)])


def _runtime(database: Database) -> Runtime:
    """What the reads use of a Runtime: its database."""
    return cast(Runtime, SimpleNamespace(database=database))


def _customer(customer: Customer) -> dict[str, Any]:
    return {
        "customer_id": customer.external_id,
        "features": customer_features(customer),
        "created_at": customer.created_at,
        "updated_at": customer.updated_at,
    }


async def test_a_customer_detail_says_what_the_response_model_says(database: Database) -> None:
    await _store(database)
    for external_id, limit in (("R-0", 3), ("R-0", 100), ("R-1", 10), ("R-2", 1)):
        fast = await detail_bytes(_runtime(database), external_id, limit)
        async with database.sessions() as session:
            found = await CustomerRepository(session).with_recent_predictions(external_id, limit)
        documented = CustomerDetail(
            **_customer(found.customer),
            recent_predictions=[prediction_record(p) for p in found.predictions],
        )
        assert json.loads(fast) == json.loads(documented.model_dump_json()), external_id
        assert len(json.loads(fast)["recent_predictions"]) == len(found.predictions)


async def test_a_customer_page_says_what_the_response_model_says(database: Database) -> None:
    await _store(database)
    for after, limit in ((None, 2), (None, 3), (None, 50)):
        fast = await page_bytes(_runtime(database), after, limit)
        async with database.sessions() as session:
            rows = await CustomerRepository(session).page(after, limit)
        documented = CustomerPage(
            items=[
                CustomerSummary(
                    **_customer(row.customer),
                    latest_prediction=None if row.latest is None else prediction_record(row.latest),
                )
                for row in rows
            ],
            next_after=rows[-1].customer.id if len(rows) == limit else None,
        )
        assert json.loads(fast) == json.loads(documented.model_dump_json()), (after, limit)
    second = json.loads(fast)["items"][1]
    assert second["customer_id"] == "R-1"
    assert second["latest_prediction"] is None


async def test_the_page_cursor_goes_on_from_the_last_customer(database: Database) -> None:
    await _store(database)
    first = json.loads(await page_bytes(_runtime(database), None, 2))
    rest = json.loads(await page_bytes(_runtime(database), first["next_after"], 2))
    assert [item["customer_id"] for item in first["items"] + rest["items"]] == [
        "R-0",
        "R-1",
        "R-2",
    ]
    assert rest["next_after"] is None


async def test_an_unknown_customer_is_not_found(database: Database) -> None:
    with pytest.raises(NotFound, match="No customer has the id 'NOPE'"):
        await detail_bytes(_runtime(database), "NOPE", 10)
