"""Recorded outcomes (did the customer churn, observed on which date) and their pairing with the
predictions made before them, which live model quality and `GET /model/compare` score.

Writes are idempotent per customer and date: the same outcome again changes nothing; another
answer for the same date replaces the stored one (the last report wins, `revised_at` says when),
because a corrected export is the usual reason for it and a 409 would leave no way to correct.
Each write is one `INSERT ... ON CONFLICT DO UPDATE ... WHERE churned differs RETURNING`, on
PostgreSQL and SQLite alike: the rows it returns are the inserted (`revised_at` null) and the
updated ones, and the rows it leaves out were unchanged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Table, bindparam, func, select, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from churn_mlops.db.engine import Database
from churn_mlops.db.models import Customer, Outcome, Prediction, UTCDateTime, utc_now
from churn_mlops.db.repository import CustomerNotFound

DEFAULT_BATCH_ROWS = 1000


def latest_observable_date() -> date:
    """The latest `observed_at` accepted: tomorrow in UTC, which is today somewhere east."""
    return datetime.now(UTC).date() + timedelta(days=1)


class OutcomeStatus(StrEnum):
    """What recording an outcome did."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class OutcomeRow:
    """One outcome to record, by the customer's external id."""

    customer_id: str
    observed_at: date
    churned: bool


@dataclass(frozen=True)
class RecordedOutcome:
    """An outcome as stored, and what recording it did."""

    customer_id: str
    observed_at: date
    churned: bool
    recorded_at: datetime
    revised_at: datetime | None
    status: OutcomeStatus


@dataclass
class ImportCounts:
    """Rows of a bulk import by what became of them."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    unknown_customer: int = 0
    invalid: int = 0

    def add(self, other: ImportCounts) -> None:
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    @property
    def total(self) -> int:
        return sum(getattr(self, field.name) for field in fields(self))


def _outcomes_table() -> Table:
    return Outcome.__table__  # type: ignore[return-value]


def _upsert(dialect: str, rows: list[dict[str, Any]]) -> Any:
    """One multi-row upsert of `rows` that returns the rows it inserted or changed."""
    table = _outcomes_table()
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values(rows)
    return statement.on_conflict_do_update(
        index_elements=[table.c.customer_id, table.c.observed_at],
        set_={"churned": statement.excluded.churned, "revised_at": statement.excluded.recorded_at},
        where=table.c.churned != statement.excluded.churned,
    ).returning(table.c.customer_id, table.c.observed_at, table.c.recorded_at, table.c.revised_at)


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def record_outcome(
    session: AsyncSession, customer_id: str, observed_at: date, churned: bool
) -> RecordedOutcome:
    """Record (and commit) one outcome of the customer with external id `customer_id`:
    CustomerNotFound if there is none. Two statements, a third to read back an unchanged one."""
    internal_id = await session.scalar(
        select(Customer.id).where(Customer.external_id == customer_id)
    )
    if internal_id is None:
        raise CustomerNotFound(customer_id)
    row = {
        "customer_id": internal_id,
        "observed_at": observed_at,
        "churned": churned,
        "recorded_at": utc_now(),
    }
    written = (await session.execute(_upsert(_dialect(session), [row]))).first()
    if written is None:
        stored = await session.scalar(
            select(Outcome).where(
                Outcome.customer_id == internal_id, Outcome.observed_at == observed_at
            )
        )
        assert stored is not None  # noqa: S101 - the upsert found this row in conflict
        recorded_at, revised_at, status = stored.recorded_at, stored.revised_at, "unchanged"
    else:
        recorded_at, revised_at = written.recorded_at, written.revised_at
        status = "created" if revised_at is None else "updated"
    await session.commit()
    return RecordedOutcome(
        customer_id, observed_at, churned, recorded_at, revised_at, OutcomeStatus(status)
    )


async def import_outcome_batch(session: AsyncSession, rows: Sequence[OutcomeRow]) -> ImportCounts:
    """Record `rows` and commit: one statement resolves the customers, one writes the batch.

    A customer and date given twice in the batch counts as if written in file order: the last
    answer is stored, and each earlier one is unchanged (same answer) or updated (another)."""
    wanted = sorted({row.customer_id for row in rows})
    resolved = dict(
        (
            await session.execute(
                select(Customer.external_id, Customer.id).where(
                    Customer.external_id.in_(bindparam("ids", expanding=True))
                ),
                {"ids": wanted},
            )
        ).all()
    )
    counts = ImportCounts()
    latest: dict[tuple[int, date], OutcomeRow] = {}
    for row in rows:
        internal_id = resolved.get(row.customer_id)
        if internal_id is None:
            counts.unknown_customer += 1
            continue
        key = (internal_id, row.observed_at)
        earlier = latest.get(key)
        if earlier is not None:
            # The earlier row, written first, would be overwritten by this one.
            if earlier.churned == row.churned:
                counts.unchanged += 1
            else:
                counts.updated += 1
        latest[key] = row
    if latest:
        now = utc_now()
        values = [
            {
                "customer_id": key[0],
                "observed_at": key[1],
                "churned": row.churned,
                "recorded_at": now,
            }
            for key, row in latest.items()
        ]
        written = (await session.execute(_upsert(_dialect(session), values))).all()
        inserted = sum(1 for row in written if row.revised_at is None)
        counts.inserted += inserted
        counts.updated += len(written) - inserted
        counts.unchanged += len(latest) - len(written)
    await session.commit()
    return counts


async def import_outcomes(
    database: Database,
    rows: Iterable[OutcomeRow],
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: Callable[[int], None] = lambda rows: None,
) -> ImportCounts:
    """Record every row, `batch_rows` at a time, each batch its own transaction: an import that
    stops half-way keeps what it wrote, and running it again only adds what is missing."""
    counts = ImportCounts()
    batch: list[OutcomeRow] = []
    async with database.sessions() as session:
        for row in rows:
            batch.append(row)
            if len(batch) >= batch_rows:
                counts.add(await import_outcome_batch(session, batch))
                progress(len(batch))
                batch = []
        if batch:
            counts.add(await import_outcome_batch(session, batch))
            progress(len(batch))
    return counts


# --- pairing outcomes with the predictions made before them ----------------------------------


class _StartOfDayUTC(FunctionElement[datetime]):
    """Midnight UTC at the start of a date column, comparable with `UTCDateTime` columns."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(_StartOfDayUTC)
def _start_of_day_postgresql(element: _StartOfDayUTC, compiler: SQLCompiler, **kw: Any) -> str:
    # A bare date compared with timestamptz would be midnight in the session's time zone.
    return f"timezone('UTC', CAST({compiler.process(element.clauses, **kw)} AS TIMESTAMP))"


@compiles(_StartOfDayUTC, "sqlite")
def _start_of_day_sqlite(element: _StartOfDayUTC, compiler: SQLCompiler, **kw: Any) -> str:
    # 'YYYY-MM-DD 00:00:00', which sorts before every stored time of that day as text.
    return f"datetime({compiler.process(element.clauses, **kw)})"


@dataclass(frozen=True)
class VersionOutcomes:
    """One model version's latest probability before each outcome it can be judged on, in
    outcome-id order (an outcome is one customer on one date)."""

    model_version: str
    outcome_ids: npt.NDArray[np.int64]
    customer_ids: npt.NDArray[np.int64]
    probabilities: npt.NDArray[np.float64]
    churned: npt.NDArray[np.bool_]

    def restricted_to(self, outcome_ids: npt.NDArray[np.int64]) -> VersionOutcomes:
        """The same figures for the outcomes of `outcome_ids` only (which it must all have)."""
        keep = np.searchsorted(self.outcome_ids, outcome_ids)
        return VersionOutcomes(
            self.model_version,
            self.outcome_ids[keep],
            self.customer_ids[keep],
            self.probabilities[keep],
            self.churned[keep],
        )


def on_common_outcomes(
    first: VersionOutcomes, second: VersionOutcomes
) -> tuple[VersionOutcomes, VersionOutcomes]:
    """Both versions restricted to the outcomes both have a prediction for, so that their
    figures compare the same customers on the same dates."""
    common = np.intersect1d(first.outcome_ids, second.outcome_ids, assume_unique=True)
    return first.restricted_to(common), second.restricted_to(common)


def _scores_before_outcomes(
    version: QueryableAttribute[Any], probability: QueryableAttribute[Any]
) -> Any:
    return (
        select(
            Outcome.id.label("outcome_id"),
            Outcome.customer_id.label("customer_id"),
            Outcome.churned.label("churned"),
            version.label("model_version"),
            probability.label("probability"),
            Prediction.created_at.label("scored_at"),
        )
        .join(Prediction, Prediction.customer_id == Outcome.customer_id)
        .where(
            Outcome.observed_at >= bindparam("since"),
            Outcome.observed_at <= bindparam("until"),
            Prediction.created_at < _StartOfDayUTC(Outcome.observed_at),
            version.is_not(None),
            probability.is_not(None),
        )
    )


def _paired_statement() -> Any:
    # Both the answered score and the shadow challenger's count for their own version. Each
    # outcome reaches its customer's predictions through ix_predictions_customer_id_created_at
    # (a range scan up to the observed date); row_number keeps the latest one per version.
    scored = union_all(
        _scores_before_outcomes(Prediction.model_version, Prediction.probability),
        _scores_before_outcomes(Prediction.challenger_version, Prediction.challenger_probability),
    ).subquery("scored")
    recency = (
        func.row_number()
        .over(
            partition_by=(scored.c.outcome_id, scored.c.model_version),
            order_by=scored.c.scored_at.desc(),
        )
        .label("recency")
    )
    ranked = select(scored, recency).subquery("ranked")
    return (
        select(
            ranked.c.model_version,
            ranked.c.outcome_id,
            ranked.c.customer_id,
            ranked.c.probability,
            ranked.c.churned,
        )
        .where(ranked.c.recency == 1)
        .order_by(ranked.c.model_version, ranked.c.outcome_id)
    )


_PAIRED = _paired_statement()


async def paired_outcomes(
    session: AsyncSession, *, observed_since: date, observed_until: date
) -> dict[str, VersionOutcomes]:
    """For every outcome observed from `observed_since` to `observed_until` (inclusive) and
    every model version that scored its customer before the start (00:00 UTC) of the observed
    date, that version's latest probability: one statement, arrays by model version.

    A prediction made on the observed date or later is never used: it may have seen the churn.
    """
    result = await session.execute(_PAIRED, {"since": observed_since, "until": observed_until})
    columns: dict[str, tuple[list[int], list[int], list[float], list[bool]]] = defaultdict(
        lambda: ([], [], [], [])
    )
    for version, outcome_id, customer_id, probability, churned in result:
        outcome_ids, customer_ids, probabilities, outcomes = columns[version]
        outcome_ids.append(outcome_id)
        customer_ids.append(customer_id)
        probabilities.append(probability)
        outcomes.append(churned)
    return {
        version: VersionOutcomes(
            version,
            np.array(outcome_ids, dtype=np.int64),
            np.array(customer_ids, dtype=np.int64),
            np.array(probabilities, dtype=np.float64),
            np.array(outcomes, dtype=np.bool_),
        )
        for version, (outcome_ids, customer_ids, probabilities, outcomes) in columns.items()
    }
