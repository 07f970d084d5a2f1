"""Alembic's environment: runs migrations on an async engine (asyncpg or aiosqlite).

Configured by `churn_mlops.db.schema` (no alembic.ini): the database URL comes in
`config.attributes["url"]`, or an open synchronous connection in `config.attributes["connection"]`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from churn_mlops.db import credentials  # noqa: F401 - registers its tables
from churn_mlops.db.engine import async_database_url, create_engine
from churn_mlops.db.models import Base

target_metadata = Base.metadata


def _configure(connection: Connection | None = None, **options: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode recreates the table instead.
        render_as_batch=connection is not None and connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=False,
        **options,
    )


# Any fixed number, the same in every process: the key of the advisory lock below.
MIGRATION_LOCK_KEY = 0x636875726E  # "churn"


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Pods (or workers) that start together each migrate: they take turns, and each
            # reads the version table only once the one before has committed. Released at commit.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    url = async_database_url(context.config.attributes["url"])
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    asyncio.run(_run_async(context.config.attributes["url"]))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
