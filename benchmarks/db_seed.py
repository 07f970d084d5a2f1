"""The db suite's database: created if missing, migrated, seeded with synthetic customers and
their predictions up to the size asked for (a database that holds them already is reused)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from churn_mlops.db import schema
from churn_mlops.db.cli import seed_with_progress
from churn_mlops.db.engine import Database, async_database_url, create_engine
from churn_mlops.db.models import Customer
from churn_mlops.db.seed import SYNTHETIC_PREFIX


async def create_database(url: str) -> None:
    """CREATE DATABASE for `url` unless it exists, through the server's `postgres` database."""
    target = make_url(async_database_url(url))
    name = target.database
    engine = create_engine(target.set(database="postgres").render_as_string(hide_password=False))
    try:
        async with engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            exists = await autocommit.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if not exists:
                await autocommit.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        await engine.dispose()


async def _id_range(url: str) -> tuple[int, int]:
    database = Database.from_url(url)
    try:
        async with database.engine.begin() as connection:
            await connection.exec_driver_sql("ANALYZE")
            low, high = (
                await connection.execute(select(func.min(Customer.id), func.max(Customer.id)))
            ).one()
    finally:
        await database.dispose()
    return int(low), int(high)


def prepare_database(
    url: str, customers: int, predictions: int, log: Callable[[str], None]
) -> tuple[int, int]:
    """Create, migrate and seed the bench database (only what is missing); its id range."""
    asyncio.run(create_database(url))
    schema.upgrade(url)
    held = asyncio.run(
        seed_with_progress(url, dataset=False, synthetic=customers, predictions=predictions)
    )
    log(f"bench database: {held[0]:,} customers, {held[1]:,} predictions")
    return asyncio.run(_id_range(url))


def database_size(url: str) -> tuple[int, int]:
    return asyncio.run(_sizes(url))


async def _sizes(url: str) -> tuple[int, int]:
    """Synthetic customers and predictions the database holds."""
    database = Database.from_url(url)
    try:
        async with database.engine.connect() as connection:
            customers = await connection.scalar(
                select(func.count())
                .select_from(Customer)
                .where(Customer.external_id.like(f"{SYNTHETIC_PREFIX}%"))
            )
            predictions = await connection.exec_driver_sql("SELECT count(*) FROM predictions")
            return int(customers or 0), int(predictions.scalar() or 0)
    finally:
        await database.dispose()
