"""Recording outcomes one at a time and in bulk, and pairing them with the predictions made
before them, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from sqlalchemy import select

from churn_mlops.db.engine import Database
from churn_mlops.db.models import Outcome
from churn_mlops.db.outcomes import (
    ImportCounts,
    OutcomeRow,
    OutcomeStatus,
    VersionOutcomes,
    import_outcome_batch,
    import_outcomes,
    on_common_outcomes,
    paired_outcomes,
    record_outcome,
)
from churn_mlops.db.repository import CustomerNotFound
from tests.fixtures.outcomes import add_customers, add_outcome, add_prediction, utc
from tests.integration.db.conftest import QueryCounter

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

MARCH_10 = date(2026, 3, 10)


async def _stored(database: Database) -> list[tuple[int, date, bool]]:
    async with database.sessions() as session:
        rows = await session.execute(
            select(Outcome.customer_id, Outcome.observed_at, Outcome.churned).order_by(
                Outcome.customer_id, Outcome.observed_at
            )
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def test_record_outcome_creates_then_leaves_the_same_outcome_unchanged(
    database: Database,
) -> None:
    await add_customers(database, "A")
    async with database.sessions() as session:
        first = await record_outcome(session, "A", MARCH_10, True)
        again = await record_outcome(session, "A", MARCH_10, True)
    assert first.status == OutcomeStatus.CREATED
    assert again.status == OutcomeStatus.UNCHANGED
    assert again.recorded_at == first.recorded_at
    assert first.revised_at is None
    assert again.revised_at is None
    assert len(await _stored(database)) == 1


async def test_record_outcome_with_another_answer_replaces_it(database: Database) -> None:
    ids = await add_customers(database, "A")
    async with database.sessions() as session:
        first = await record_outcome(session, "A", MARCH_10, True)
        revised = await record_outcome(session, "A", MARCH_10, False)
    assert revised.status == OutcomeStatus.UPDATED
    assert revised.recorded_at == first.recorded_at
    assert revised.revised_at is not None
    assert revised.revised_at >= first.recorded_at
    assert await _stored(database) == [(ids["A"], MARCH_10, False)]


async def test_record_outcome_of_an_unknown_customer_is_customer_not_found(
    database: Database,
) -> None:
    async with database.sessions() as session:
        with pytest.raises(CustomerNotFound) as caught:
            await record_outcome(session, "NOPE", MARCH_10, True)
    assert caught.value.external_id == "NOPE"
    assert await _stored(database) == []


async def test_import_batch_counts_each_fate_in_two_statements(database: Database) -> None:
    ids = await add_customers(database, "A", "B", "C")
    async with database.sessions() as session:
        await record_outcome(session, "A", MARCH_10, True)
        await record_outcome(session, "B", MARCH_10, True)
    rows = [
        OutcomeRow("A", MARCH_10, True),  # as stored: unchanged
        OutcomeRow("B", MARCH_10, False),  # another answer: updated
        OutcomeRow("C", MARCH_10, False),  # new
        OutcomeRow("C", date(2026, 3, 11), True),  # new: another date
        OutcomeRow("C", date(2026, 3, 11), True),  # the same again in the batch: unchanged
        OutcomeRow("GONE", MARCH_10, True),  # unknown customer
    ]
    counter = QueryCounter(database.engine)
    async with database.sessions() as session:
        with counter.counting() as statements:
            counts = await import_outcome_batch(session, rows)
    assert counts == ImportCounts(inserted=2, updated=1, unchanged=2, unknown_customer=1)
    assert len(statements) == 2
    assert await _stored(database) == [
        (ids["A"], MARCH_10, True),
        (ids["B"], MARCH_10, False),
        (ids["C"], MARCH_10, False),
        (ids["C"], date(2026, 3, 11), True),
    ]


async def test_import_outcomes_again_changes_nothing(database: Database) -> None:
    await add_customers(database, *(f"C-{n}" for n in range(25)))
    rows = [OutcomeRow(f"C-{n}", MARCH_10, n % 3 == 0) for n in range(25)]
    batches: list[int] = []
    first = await import_outcomes(database, rows, batch_rows=10, progress=batches.append)
    second = await import_outcomes(database, rows, batch_rows=10)
    assert batches == [10, 10, 5]
    assert first == ImportCounts(inserted=25)
    assert second == ImportCounts(unchanged=25)
    assert first.total == second.total == 25


async def test_pairing_uses_the_latest_prediction_made_before_the_observed_date(
    database: Database,
) -> None:
    ids = await add_customers(database, "A")
    customer = ids["A"]
    await add_prediction(database, customer, "v1", 0.2, utc(2026, 3, 1))
    await add_prediction(database, customer, "v1", 0.7, utc(2026, 3, 9, 23, 59))  # latest before
    await add_prediction(database, customer, "v1", 0.99, utc(2026, 3, 10, 0, 0))  # on the day
    await add_prediction(database, customer, "v1", 0.01, utc(2026, 3, 12))  # after
    outcome = await add_outcome(database, customer, MARCH_10, True)
    async with database.sessions() as session:
        paired = await paired_outcomes(
            session, observed_since=date(2026, 3, 1), observed_until=date(2026, 3, 31)
        )
    assert list(paired) == ["v1"]
    assert paired["v1"].outcome_ids.tolist() == [outcome]
    assert paired["v1"].customer_ids.tolist() == [customer]
    assert paired["v1"].probabilities.tolist() == [0.7]
    assert paired["v1"].churned.tolist() == [True]


async def test_pairing_counts_a_shadow_challenger_score_for_the_challenger(
    database: Database,
) -> None:
    ids = await add_customers(database, "A", "B")
    await add_prediction(database, ids["A"], "v1", 0.3, utc(2026, 3, 5), challenger=("v2", 0.8))
    await add_prediction(database, ids["B"], "v1", 0.6, utc(2026, 3, 5))
    await add_prediction(database, ids["B"], "v2", 0.1, utc(2026, 3, 6))  # v2 as canary
    await add_outcome(database, ids["A"], MARCH_10, True)
    await add_outcome(database, ids["B"], MARCH_10, False)
    counter = QueryCounter(database.engine)
    async with database.sessions() as session:
        with counter.counting() as statements:
            paired = await paired_outcomes(
                session, observed_since=MARCH_10, observed_until=MARCH_10
            )
    assert len(statements) == 1
    assert sorted(paired) == ["v1", "v2"]
    assert paired["v1"].probabilities.tolist() == [0.3, 0.6]
    assert paired["v2"].probabilities.tolist() == [0.8, 0.1]
    assert paired["v2"].customer_ids.tolist() == [ids["A"], ids["B"]]
    assert paired["v2"].churned.tolist() == [True, False]


async def test_pairing_leaves_out_outcomes_outside_the_window_and_unscored_customers(
    database: Database,
) -> None:
    ids = await add_customers(database, "A", "B")
    await add_prediction(database, ids["A"], "v1", 0.4, utc(2026, 2, 1))
    await add_outcome(database, ids["A"], date(2026, 2, 20), True)  # before the window
    await add_outcome(database, ids["A"], MARCH_10, False)
    await add_outcome(database, ids["B"], MARCH_10, True)  # never scored
    async with database.sessions() as session:
        paired = await paired_outcomes(
            session, observed_since=date(2026, 3, 1), observed_until=date(2026, 3, 31)
        )
    assert paired["v1"].customer_ids.tolist() == [ids["A"]]
    assert paired["v1"].churned.tolist() == [False]


def _version(name: str, outcome_ids: list[int], probabilities: list[float]) -> VersionOutcomes:
    return VersionOutcomes(
        name,
        np.array(outcome_ids, dtype=np.int64),
        np.array(outcome_ids, dtype=np.int64) * 10,
        np.array(probabilities),
        np.array([i % 2 == 0 for i in outcome_ids]),
    )


def test_on_common_outcomes_keeps_the_outcomes_both_versions_scored() -> None:
    first = _version("v1", [1, 2, 4, 7], [0.1, 0.2, 0.4, 0.7])
    second = _version("v2", [2, 3, 7], [0.25, 0.35, 0.75])
    left, right = on_common_outcomes(first, second)
    assert left.outcome_ids.tolist() == right.outcome_ids.tolist() == [2, 7]
    assert left.probabilities.tolist() == [0.2, 0.7]
    assert right.probabilities.tolist() == [0.25, 0.75]
    assert left.customer_ids.tolist() == [20, 70]
    assert left.churned.tolist() == right.churned.tolist() == [True, False]
