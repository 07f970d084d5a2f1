"""The async engine and session factory, for PostgreSQL (asyncpg) or a SQLite file (aiosqlite)."""

from __future__ import annotations

import asyncio
import logging
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from churn_mlops.db.read_pool import ReadPool
from churn_mlops.settings import Settings

_ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}
# How long a SQLite writer waits for another connection's lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 5000
# How long closing the pool may wait on the database before its connections are cut.
DISPOSE_LIMIT_SECONDS = 2.0
# The customer reads' own pool per worker (CHURN_DB_READ_POOL_SIZE): one statement each, a few
# connections serve thousands a second.
READ_POOL_SIZE = 8
READ_CONNECT_SECONDS = 5.0

log = logging.getLogger(__name__)


class DatabaseURLError(ValueError):
    """A database URL this service cannot use."""


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        raise DatabaseURLError(f"not a database URL: {_redacted(url)!r}") from None


def _redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1]


def async_database_url(url: str) -> str:
    """`url` with the async driver: `postgresql://` and `postgres://` become
    `postgresql+asyncpg://`, `sqlite:///path` becomes `sqlite+aiosqlite:///path`; URLs that
    already name those drivers pass through. Any other scheme is a DatabaseURLError."""
    # make_url does not know the `postgres` alias (libpq and Heroku use it).
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    parsed = _parse(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        raise DatabaseURLError(
            f"unsupported database URL scheme {parsed.drivername!r}: use postgresql://... "
            "or sqlite:///path"
        )
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return _parse(async_database_url(url)).get_backend_name() == "sqlite"


def plain_postgres_url(engine: AsyncEngine) -> str:
    """The engine's database as a `postgresql://` URL, with its password, for asyncpg itself."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for an in-memory database)."""
    parsed = _parse(async_database_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run while one writer writes; NORMAL sync is durable across app crashes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(
    url: str,
    *,
    pool_size: int = 20,
    max_overflow: int = 10,
    pool_pre_ping: bool = True,
    pool_recycle_seconds: int = 3600,
    statement_timeout_ms: int = 5000,
    echo: bool = False,
) -> AsyncEngine:
    """An async engine for `url` (any URL `async_database_url` accepts)."""
    target = async_database_url(url)
    if is_sqlite(target):
        path = sqlite_path(target)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            target,
            echo=echo,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000.0},
        )
        event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
        return engine
    return create_async_engine(
        target,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pool_pre_ping,
        pool_recycle=pool_recycle_seconds,
        connect_args={
            "server_settings": {
                "statement_timeout": str(statement_timeout_ms),
                "application_name": "churn-mlops",
            },
            "command_timeout": max(statement_timeout_ms / 1000.0 * 2, 1.0),
        },
    )


# Attempts given up on by `session_within` (and closings of what they opened anyway), referenced
# until they have unwound.
_abandoned: set[asyncio.Future[Any]] = set()


def _abandon(attempt: asyncio.Future[AsyncSession]) -> None:
    """Give up on an attempt: cancel it, or close the session it opened all the same."""
    if not attempt.done():
        attempt.cancel()
        _abandoned.add(attempt)
        attempt.add_done_callback(_abandon_done)
        return
    _abandoned.discard(attempt)
    if attempt.cancelled() or attempt.exception() is not None:
        return  # the exception is retrieved: the caller has answered 503 already
    closing = asyncio.ensure_future(attempt.result().close())
    _abandoned.add(closing)
    closing.add_done_callback(_abandoned.discard)


def _abandon_done(attempt: asyncio.Future[AsyncSession]) -> None:
    _abandon(attempt)


class Database:
    """The service's engine (connection pool) and its session factory."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        statement_timeout_ms: int = 5000,
        read_pool_size: int = READ_POOL_SIZE,
    ) -> None:
        self.engine = engine
        self.reads: ReadPool | None = None
        """PostgreSQL: the customer reads' own asyncpg pool (opened on the first read)."""
        if engine.dialect.name == "postgresql":
            self.reads = ReadPool(
                plain_postgres_url(engine),
                max_size=read_pool_size,
                statement_timeout_ms=statement_timeout_ms,
                connect_seconds=READ_CONNECT_SECONDS,
            )
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            engine, expire_on_commit=False
        )
        # The driver's connections, so that `dispose` can cut those the database holds.
        self._opened: weakref.WeakSet[Any] = weakref.WeakSet()
        event.listen(engine.sync_engine, "connect", self._track)

    def _track(self, dbapi_connection: Any, _record: Any) -> None:
        self._opened.add(dbapi_connection.driver_connection)

    @classmethod
    def from_url(cls, url: str, read_pool_size: int = READ_POOL_SIZE, **options: Any) -> Database:
        timeout = options.get("statement_timeout_ms", 5000)
        return cls(
            create_engine(url, **options),
            statement_timeout_ms=timeout,
            read_pool_size=read_pool_size,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls.from_url(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_pre_ping=settings.db_pool_pre_ping,
            pool_recycle_seconds=settings.db_pool_recycle_seconds,
            statement_timeout_ms=settings.db_statement_timeout_ms,
            read_pool_size=settings.db_read_pool_size,
        )

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def connections_in_use(self) -> int | None:
        """Connections checked out of the engine's pool and held by customer reads; None on
        SQLite, whose pools (StaticPool, NullPool) count nothing."""
        checkedout = getattr(self.engine.pool, "checkedout", None)
        if checkedout is None:
            return None
        return int(checkedout()) + (self.reads.in_use() if self.reads is not None else 0)

    async def session_within(self, seconds: float) -> AsyncSession:
        """A new session holding a live connection (pooled, after its pre-ping, or newly
        connected) within `seconds`; TimeoutError past it. The caller closes the session.

        An attempt past its budget is cancelled without waiting for it to unwind: asyncpg
        cancels a running query (the pre-ping) over a connection of its own, which a database
        that drops packets holds for seconds more (a 1 s budget became 3 s when awaited)."""
        attempt = asyncio.ensure_future(self._connected_session())
        try:
            done, _ = await asyncio.wait((attempt,), timeout=seconds)
        except asyncio.CancelledError:  # the request went away
            _abandon(attempt)
            raise
        if attempt in done:
            return attempt.result()
        _abandon(attempt)
        raise TimeoutError(f"no database connection within {seconds:g} s")

    async def _connected_session(self) -> AsyncSession:
        session = self.sessions()
        try:
            await session.connection()
        except BaseException:
            await session.close()
            raise
        return session

    async def ping(self, limit_seconds: float = 1.0) -> bool:
        """Whether the database answers a trivial query within `limit_seconds`."""
        try:
            async with asyncio.timeout(limit_seconds), self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:  # any failure (refused, timeout, auth) means "not reachable" here
            return False
        return True

    async def dispose(self, limit_seconds: float = DISPOSE_LIMIT_SECONDS) -> None:
        """Close the pool's connections; past `limit_seconds`, cut the rest without a goodbye.

        A polite close waits for the server's reply, up to asyncpg's command timeout (10 s)
        per connection: a database that drops packets would hold a worker's shutdown for
        minutes."""
        if self.reads is not None:
            await self.reads.close(limit_seconds)
        try:
            async with asyncio.timeout(limit_seconds):
                await self.engine.dispose()
            return
        except TimeoutError:
            log.warning(
                "the database did not answer within %g s at shutdown; cutting its connections",
                limit_seconds,
            )
        for connection in list(self._opened):
            terminate = getattr(connection, "terminate", None)
            if terminate is not None:
                terminate()
        await self.engine.dispose()
