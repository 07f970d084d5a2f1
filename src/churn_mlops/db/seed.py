"""Loading customers: the shipped dataset (upserted on `external_id`), synthetic customers
sampled from it, and synthetic prediction history for benchmarks.

Synthetic customers are whole dataset rows drawn at random (so the features stay consistent
with each other: no streaming add-on without internet), with tenure and charges jittered and
`total_charges` recomputed from them. Their ids are `SYN-000000000`, `SYN-000000001`, ...; each
chunk is drawn from a generator seeded with (seed, its first id), so a run is reproducible, and
asking for N customers again only adds the ones that are missing.

PostgreSQL loads through `COPY` (asyncpg's `copy_records_to_table`); SQLite through executemany
of large batches in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Table, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from churn_mlops.core.features import FEATURE_NAMES
from churn_mlops.data import TelcoDataset
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Customer, Prediction

SYNTHETIC_PREFIX = "SYN-"
SYNTHETIC_ID_DIGITS = 9
SYNTHETIC_MODEL_VERSION = "synthetic"
# Prediction history spreads over this many days before the load.
HISTORY_DAYS = 90

Progress = Callable[[int], None]
"""Called with the number of rows just written."""

CUSTOMER_COLUMNS: tuple[str, ...] = ("external_id", *FEATURE_NAMES)
PREDICTION_COLUMNS: tuple[str, ...] = (
    "id",
    "customer_id",
    "external_customer_id",
    "model_version",
    "probability",
    "will_churn",
    "cached",
    "latency_ms",
    "created_at",
)


def _no_progress(rows: int) -> None:
    return None


@dataclass(frozen=True)
class SeedResult:
    """What a seeding step did."""

    written: int
    total: int


async def _without_statement_timeout(connection: AsyncConnection) -> None:
    """Bulk loads run past the service's statement timeout: lift it for this transaction."""
    if connection.dialect.name == "postgresql":
        await connection.exec_driver_sql("SET LOCAL statement_timeout = 0")


def _customers_table() -> Table:
    return Customer.__table__  # type: ignore[return-value]


def _predictions_table() -> Table:
    return Prediction.__table__  # type: ignore[return-value]


def _upsert(connection: AsyncConnection, rows: list[dict[str, Any]]) -> Any:
    table = _customers_table()
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    updated = {name: statement.excluded[name] for name in FEATURE_NAMES}
    updated["updated_at"] = func.now()
    return connection.execute(
        statement.on_conflict_do_update(index_elements=["external_id"], set_=updated), rows
    )


async def seed_dataset(
    database: Database,
    dataset: TelcoDataset,
    *,
    batch_size: int = 1000,
    progress: Progress = _no_progress,
) -> SeedResult:
    """Insert the dataset's customers, or update their features if they exist."""
    rows = [
        {"external_id": external_id, **features}
        for external_id, features in zip(dataset.customer_ids, dataset.feature_rows(), strict=True)
    ]
    async with database.engine.begin() as connection:
        await _without_statement_timeout(connection)
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            await _upsert(connection, chunk)
            progress(len(chunk))
        total = await connection.scalar(select(func.count()).select_from(_customers_table()))
    return SeedResult(written=len(rows), total=int(total or 0))


def synthetic_id(number: int) -> str:
    return f"{SYNTHETIC_PREFIX}{number:0{SYNTHETIC_ID_DIGITS}d}"


class CustomerSampler:
    """Draws realistic synthetic customers from a dataset, vectorised with numpy."""

    def __init__(self, dataset: TelcoDataset, seed: int = 42) -> None:
        self.seed = seed
        self.size = len(dataset)
        self._columns: dict[str, npt.NDArray[Any]] = {}
        for name in FEATURE_NAMES:
            values = dataset.columns[name]
            if name == "total_charges":
                continue
            if name in ("senior_citizen", "tenure"):
                self._columns[name] = np.asarray(values, dtype=np.int64)
            elif name == "monthly_charges":
                self._columns[name] = np.asarray(values, dtype=np.float64)
            else:
                self._columns[name] = np.asarray(values, dtype=object)
        self._min_charge = float(self._columns["monthly_charges"].min())
        self._max_charge = float(self._columns["monthly_charges"].max())
        self._max_tenure = int(self._columns["tenure"].max())

    def columns(self, first: int, count: int) -> dict[str, list[Any]]:
        """Customers `first` .. `first + count - 1` as one list per column of `CUSTOMER_COLUMNS`."""
        rng = np.random.default_rng([self.seed, first])
        picked = rng.integers(0, self.size, count)
        result: dict[str, list[Any]] = {
            "external_id": [synthetic_id(n) for n in range(first, first + count)]
        }
        tenure = np.clip(
            self._columns["tenure"][picked] + rng.integers(-3, 4, count), 0, self._max_tenure
        )
        monthly = np.round(
            np.clip(
                self._columns["monthly_charges"][picked] * rng.normal(1.0, 0.03, count),
                self._min_charge,
                self._max_charge,
            ),
            2,
        )
        # What was billed so far: about tenure x monthly, with price changes along the way.
        total = np.round(tenure * monthly * rng.uniform(0.9, 1.1, count), 2)
        for name in FEATURE_NAMES:
            if name == "tenure":
                result[name] = tenure.tolist()
            elif name == "monthly_charges":
                result[name] = monthly.tolist()
            elif name == "total_charges":
                result[name] = [
                    None if t == 0 else v
                    for t, v in zip(tenure.tolist(), total.tolist(), strict=True)
                ]
            else:
                result[name] = self._columns[name][picked].tolist()
        return result


def _chunks(first: int, end: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(first, end, size):
        yield start, min(size, end - start)


async def _synthetic_count(connection: AsyncConnection) -> int:
    """How many synthetic customers exist; they are always loaded in id order, whole runs in
    one transaction, so the highest id tells."""
    external_id = _customers_table().c.external_id
    highest = await connection.scalar(
        select(func.max(external_id)).where(external_id.like(f"{SYNTHETIC_PREFIX}%"))
    )
    return 0 if highest is None else int(str(highest).removeprefix(SYNTHETIC_PREFIX)) + 1


async def _copy(
    connection: AsyncConnection, table: str, columns: Sequence[str], records: list[tuple[Any, ...]]
) -> None:
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None  # noqa: S101 - an open connection always has one
    await driver.copy_records_to_table(table, records=records, columns=list(columns))


async def _write(
    connection: AsyncConnection,
    table: Table,
    columns: Sequence[str],
    data: dict[str, list[Any]],
) -> None:
    if connection.dialect.name == "postgresql":
        records = list(zip(*(data[name] for name in columns), strict=True))
        await _copy(connection, table.name, columns, records)
        return
    keys = list(columns)
    rows = [
        dict(zip(keys, values, strict=True))
        for values in zip(*(data[k] for k in keys), strict=True)
    ]
    await connection.execute(insert(table), rows)


async def seed_synthetic_customers(
    database: Database,
    dataset: TelcoDataset,
    count: int,
    *,
    seed: int = 42,
    batch_size: int = 50_000,
    progress: Progress = _no_progress,
) -> SeedResult:
    """Make sure synthetic customers `SYN-0..count-1` exist; add only the missing ones."""
    sampler = CustomerSampler(dataset, seed)
    table = _customers_table()
    async with database.engine.begin() as connection:
        await _without_statement_timeout(connection)
        existing = await _synthetic_count(connection)
        progress(min(existing, count))
        for first, size in _chunks(existing, count, batch_size):
            await _write(connection, table, CUSTOMER_COLUMNS, sampler.columns(first, size))
            progress(size)
        total = await connection.scalar(select(func.count()).select_from(table))
    return SeedResult(written=max(count - existing, 0), total=int(total or 0))


def _uuids(rng: np.random.Generator, count: int) -> list[uuid.UUID]:
    raw = rng.integers(0, 256, (count, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return [uuid.UUID(bytes=row) for row in map(bytes, raw)]


def synthetic_predictions(
    customer_ids: npt.NDArray[np.int64],
    external_ids: npt.NDArray[Any],
    count: int,
    *,
    seed: int,
    now: datetime,
) -> dict[str, list[Any]]:
    """`count` predictions of random customers over the last `HISTORY_DAYS` days."""
    rng = np.random.default_rng([seed, count, len(customer_ids)])
    picked = rng.integers(0, len(customer_ids), count)
    # Churn probabilities are mostly low with a long tail, as the model's answers are.
    probability = rng.beta(1.2, 3.0, count)
    seconds = rng.uniform(0, HISTORY_DAYS * 86_400, count)
    start = now - timedelta(days=HISTORY_DAYS)
    return {
        "id": _uuids(rng, count),
        "customer_id": customer_ids[picked].tolist(),
        "external_customer_id": external_ids[picked].tolist(),
        "model_version": [SYNTHETIC_MODEL_VERSION] * count,
        "probability": probability.tolist(),
        "will_churn": (probability >= 0.34).tolist(),
        "cached": (rng.random(count) < 0.3).tolist(),
        "latency_ms": np.round(rng.lognormal(0.0, 0.5, count), 3).tolist(),
        "created_at": [start + timedelta(seconds=s) for s in seconds.tolist()],
    }


async def seed_synthetic_predictions(
    database: Database,
    count: int,
    *,
    seed: int = 42,
    batch_size: int = 100_000,
    progress: Progress = _no_progress,
) -> SeedResult:
    """Make sure at least `count` predictions exist, adding random ones of existing customers."""
    table, customers = _predictions_table(), _customers_table()
    async with database.engine.begin() as connection:
        await _without_statement_timeout(connection)
        existing = int(await connection.scalar(select(func.count()).select_from(table)) or 0)
        progress(min(existing, count))
        missing = max(count - existing, 0)
        if missing:
            result = await connection.execute(select(customers.c.id, customers.c.external_id))
            ids, external = zip(*result.all(), strict=True)
            customer_ids = np.asarray(ids, dtype=np.int64)
            external_ids = np.asarray(external, dtype=object)
            now = datetime.now(UTC)
            for first, size in _chunks(existing, existing + missing, batch_size):
                data = synthetic_predictions(
                    customer_ids, external_ids, size, seed=seed + first, now=now
                )
                await _write(connection, table, PREDICTION_COLUMNS, data)
                progress(size)
    return SeedResult(written=missing, total=existing + missing)
