from __future__ import annotations

from pathlib import Path

import pytest

from churn_mlops.db.engine import Database, DatabaseURLError, async_database_url, sqlite_path


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://user@host:5432/db", "postgresql+asyncpg://user@host:5432/db"),
        ("postgres://user:pw@host/db", "postgresql+asyncpg://user:pw@host/db"),
        ("postgresql+asyncpg://user@host/db", "postgresql+asyncpg://user@host/db"),
        ("sqlite:///var/churn.db", "sqlite+aiosqlite:///var/churn.db"),
        ("sqlite:////abs/churn.db", "sqlite+aiosqlite:////abs/churn.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u:p%40ss@h:5432/db?sslmode=require", None),
    ],
)
def test_async_database_url_picks_the_async_driver(url: str, expected: str | None) -> None:
    if expected is None:
        # A password with an escaped character and query options survive the round trip.
        assert async_database_url(url) == "postgresql+asyncpg://u:p%40ss@h:5432/db?sslmode=require"
    else:
        assert async_database_url(url) == expected


@pytest.mark.parametrize(
    "url", ["mysql://user@host/db", "postgresql+psycopg2://user@host/db", "redis://host:6379/0"]
)
def test_async_database_url_refuses_other_schemes(url: str) -> None:
    with pytest.raises(DatabaseURLError, match="unsupported database URL scheme"):
        async_database_url(url)


def test_async_database_url_refuses_what_is_not_a_url() -> None:
    with pytest.raises(DatabaseURLError, match="not a database URL"):
        async_database_url("churn.db")


def test_sqlite_path_is_the_file_of_the_url() -> None:
    assert sqlite_path("sqlite:///var/churn.db") == Path("var/churn.db")
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("postgresql://u@h/db") is None


@pytest.mark.anyio
async def test_database_creates_the_sqlite_directory_and_uses_wal(tmp_path: Path) -> None:
    file = tmp_path / "nested" / "dir" / "churn.db"
    database = Database.from_url(f"sqlite:///{file}")
    try:
        assert file.parent.is_dir()
        async with database.engine.connect() as connection:
            mode = await connection.exec_driver_sql("PRAGMA journal_mode")
            assert mode.scalar() == "wal"
            timeout = await connection.exec_driver_sql("PRAGMA busy_timeout")
            assert timeout.scalar() == 5000
        assert await database.ping()
    finally:
        await database.dispose()


@pytest.mark.anyio
async def test_ping_is_false_when_the_database_does_not_answer() -> None:
    from benchmarks.servers import free_port

    database = Database.from_url(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    try:
        assert await database.ping(limit_seconds=2.0) is False
    finally:
        await database.dispose()


def test_postgres_engine_gets_the_pool_settings() -> None:
    database = Database.from_url(
        "postgresql://u@127.0.0.1/db", pool_size=7, max_overflow=3, pool_recycle_seconds=60
    )
    pool = database.engine.pool
    assert pool.size() == 7  # type: ignore[attr-defined]
    assert pool._max_overflow == 3  # type: ignore[attr-defined]
    assert pool._recycle == 60
    assert pool._pre_ping is True
