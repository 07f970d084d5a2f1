"""Loading customers: a dataset's rows (the served model's training data, or the shipped
example; upserted on `external_id`), synthetic customers sampled from it, and synthetic
prediction history for benchmarks. Every row is stored as its features object with the hash of
the dataset's schema.

Synthetic customers are whole dataset rows drawn at random (so the features stay consistent
with each other: no streaming add-on without internet), with integer and number features
jittered within the dataset's range (integers by up to 3, numbers by about 3 %, rounded to
cents); a missing value stays missing. Their ids are `SYN-000000000`, `SYN-000000001`, ...; each
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
import orjson
from sqlalchemy import Table, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from churn_mlops.data import Dataset
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Customer, Prediction

SYNTHETIC_PREFIX = "SYN-"
SYNTHETIC_ID_DIGITS = 9
SYNTHETIC_MODEL_VERSION = "synthetic"
# Prediction history spreads over this many days before the load.
HISTORY_DAYS = 90

Progress = Callable[[int], None]
"""Called with the number of rows just written."""

CUSTOMER_COLUMNS: tuple[str, ...] = ("external_id", "features", "schema_sha256")
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
    updated = {name: statement.excluded[name] for name in ("features", "schema_sha256")}
    updated["updated_at"] = func.now()
    return connection.execute(
        statement.on_conflict_do_update(index_elements=["external_id"], set_=updated), rows
    )


async def seed_dataset(
    database: Database,
    dataset: Dataset,
    *,
    batch_size: int = 1000,
    progress: Progress = _no_progress,
) -> SeedResult:
    """Insert the dataset's customers, or update their features if they exist."""
    sha256 = dataset.schema.sha256
    rows = [
        {"external_id": external_id, "features": features, "schema_sha256": sha256}
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

    def __init__(self, dataset: Dataset, seed: int = 42) -> None:
        self.seed = seed
        self.size = len(dataset)
        self.schema = dataset.schema
        self._columns: dict[str, npt.NDArray[Any]] = {}
        self._ranges: dict[str, tuple[float, float]] = {}
        for spec in dataset.schema.features:
            values = dataset.columns[spec.name]
            column = np.asarray(values, dtype=object)
            self._columns[spec.name] = column
            present = [v for v in values if v is not None]
            if spec.kind in ("integer", "number") and present:
                self._ranges[spec.name] = (float(min(present)), float(max(present)))

    def _jittered(self, name: str, picked: npt.NDArray[Any], rng: np.random.Generator) -> list[Any]:
        values = self._columns[name][picked]
        if name not in self._ranges:
            return list(values.tolist())
        low, high = self._ranges[name]
        missing = np.array([value is None for value in values], dtype=bool)
        numbers = np.where(missing, low, values).astype(np.float64)
        if self.schema.spec(name).kind == "integer":
            jittered = np.clip(numbers + rng.integers(-3, 4, len(values)), low, high)
            result: list[Any] = jittered.astype(np.int64).tolist()
        else:
            jittered = np.clip(numbers * rng.normal(1.0, 0.03, len(values)), low, high)
            result = np.round(jittered, 2).tolist()
        return [None if gone else value for gone, value in zip(missing, result, strict=True)]

    def columns(self, first: int, count: int) -> dict[str, list[Any]]:
        """Customers `first` .. `first + count - 1` as one list per column of `CUSTOMER_COLUMNS`
        (the features as JSON text)."""
        rng = np.random.default_rng([self.seed, first])
        picked = rng.integers(0, self.size, count)
        names = self.schema.names
        values = [self._jittered(name, picked, rng) for name in names]
        return {
            "external_id": [synthetic_id(n) for n in range(first, first + count)],
            "features": [
                orjson.dumps(dict(zip(names, row, strict=True))).decode()
                for row in zip(*values, strict=True)
            ],
            "schema_sha256": [self.schema.sha256] * count,
        }


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
    dataset: Dataset,
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
