"""A few asyncpg connections of its own for the customer reads' fast path, on PostgreSQL.

Through SQLAlchemy's pool a read costs a session, a pre-ping round trip and a few greenlet
switches before its one statement. asyncpg's own pool costs less, but still 65 us of CPU per
acquire and release on this machine (a task per release, for its reset), a third of a detail
read's client side: a read here takes an idle connection off a list, or opens one (up to
`max_size`), or waits in line for one given back. Each connection keeps its statements
prepared. A connection the database dropped fails its read, which runs once more on another;
an outage answers 503.

The prediction log's COPY runs on a pool of its own of one connection (`run`, with the
driver's errors as they are: the log counts them as an outage and spills).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

UNAVAILABLE_SQLSTATES = ("08", "53", "57", "55000")
"""PostgreSQL's refusals that mean "not now" rather than a bug: connection exceptions (08),
insufficient resources (53: too many connections), operator intervention (57: shutting down,
starting up, a cancelled statement) and a database not accepting connections (55000)."""


T = TypeVar("T")
Work = Callable[[asyncpg.Connection, float], Awaitable[T]]
"""What runs on a taken connection, given the seconds left of its budget."""


class ReadsUnavailable(Exception):
    """The database did not answer a read within its budget, or refused it for now."""


def _unavailable(error: BaseException) -> bool:
    if isinstance(error, OSError | TimeoutError | asyncpg.InterfaceError):
        return True
    if connection_lost(error):
        return True
    state = getattr(error, "sqlstate", None)
    return isinstance(state, str) and state.startswith(UNAVAILABLE_SQLSTATES)


def connection_lost(error: BaseException) -> bool:
    """The connection is gone, not the database: closed under the read, or an unsolicited
    FATAL (57P01, "terminating connection due to administrator command") that asyncpg meets in
    a state it does not expect (InternalClientError)."""
    if isinstance(error, asyncpg.ConnectionDoesNotExistError | ConnectionError):
        return True
    if isinstance(error, asyncpg.InternalClientError):
        return True
    state = getattr(error, "sqlstate", None)
    return isinstance(state, str) and state.startswith(("08", "57P"))


class ReadPool:
    """Connections for single-statement reads (`fetch`), or for the work `run` is given, opened
    on demand (none before the first use)."""

    def __init__(
        self,
        url: str,
        *,
        max_size: int,
        statement_timeout_ms: int,
        connect_seconds: float,
        application_name: str = "churn-mlops-reads",
    ) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("the read pool takes a plain postgresql:// URL")
        self.url = url
        self.max_size = max_size
        self.statement_timeout_ms = statement_timeout_ms
        self.connect_seconds = connect_seconds
        self.application_name = application_name
        self._idle: list[asyncpg.Connection] = []
        self._open_count = 0
        """Connections open or opening, idle or not."""
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        """Reads in line for a connection; None wakes one to open a connection itself."""
        self._closed = False

    def fetch(self, sql: str, *arguments: Any, budget: float) -> Awaitable[Sequence[Any]]:
        """The rows of one statement, within `budget` seconds (waiting for a connection
        included); ReadsUnavailable if the database does not answer or refuses. (`run`'s own
        coroutine, awaited by the caller: no frame of ours in between on the read path.)"""
        return self.run(_fetching(sql, arguments), budget=budget, unavailable=ReadsUnavailable)

    async def run(
        self, work: Work[T], *, budget: float, unavailable: type[Exception] | None = None
    ) -> T:
        """`work` on a taken connection within `budget` seconds (waiting for a connection
        included); the driver's errors as they are, or, given `unavailable`, those that mean
        "not now" turned into it.

        A pooled connection the database dropped while it sat idle (a restart, an operator's
        pg_terminate_backend, a proxy's reset) fails `work` before it has done anything: `work`
        runs once more on another connection within the same budget. A read changes nothing;
        the log's COPY skips what a first attempt stored."""
        deadline = asyncio.get_running_loop().time() + budget
        try:
            try:
                return await self._run_once(work, deadline)
            except Exception as error:
                if not connection_lost(error):
                    raise
                return await self._run_once(work, deadline)
        except Exception as error:
            if unavailable is not None and _unavailable(error):
                raise unavailable(str(error) or type(error).__name__) from error
            raise

    def in_use(self) -> int:
        """Connections a read holds now."""
        return self._open_count - len(self._idle)

    async def close(self, limit_seconds: float = 2.0) -> None:
        """Close the idle connections, and each busy one when its read ends; past
        `limit_seconds` (a database that drops packets), cut them."""
        self._closed = True
        idle, self._idle = self._idle, []
        self._open_count -= len(idle)
        while self._waiters:  # they find the pool closed
            _hand(self._waiters.popleft(), None)
        if not idle:
            return
        # One connection the database already dropped must not stop the others' goodbye.
        closing = asyncio.gather(*(c.close() for c in idle), return_exceptions=True)
        try:
            async with asyncio.timeout(limit_seconds):
                await closing
        except TimeoutError:
            for connection in idle:
                connection.terminate()

    async def _run_once(self, work: Work[T], deadline: float) -> T:
        connection = await self._take(deadline)
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            self._give_back(connection)
            raise TimeoutError("no time left for the read")
        try:
            result = await work(connection, remaining)
        except BaseException as error:
            if isinstance(error, asyncpg.PostgresError) and not connection_lost(error):
                self._give_back(connection)  # the statement failed; the connection is fine
            else:
                # A read cut short leaves the connection mid-reply or cancelling, which reusing
                # would wait for on a database that does not answer.
                self._discard(connection)
            raise
        self._give_back(connection)
        return result

    async def _take(self, deadline: float) -> asyncpg.Connection:
        """An idle connection, a new one if fewer than `max_size` are open, or the next one
        given back, before `deadline`."""
        while True:
            if self._closed:  # a read that arrives while the worker stops must not reopen it
                raise ReadsUnavailable("the read pool is closed")
            while self._idle:
                connection = self._idle.pop()
                if not connection.is_closed():
                    return connection
                self._open_count -= 1
            if self._open_count < self.max_size:
                return await self._connect(deadline)
            waiter: asyncio.Future[asyncpg.Connection | None]
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    given = await waiter
            except BaseException:
                if not waiter.done():
                    self._waiters.remove(waiter)
                elif not waiter.cancelled():  # handed over as this read gave up: pass it on
                    handed = waiter.result()
                    if handed is None:
                        self._wake_one_opener()
                    else:
                        self._give_back(handed)
                raise
            if given is not None:
                return given

    async def _connect(self, deadline: float) -> asyncpg.Connection:
        self._open_count += 1
        try:
            remaining = deadline - asyncio.get_running_loop().time()
            seconds = max(min(self.connect_seconds, remaining), 0.001)
            return await asyncpg.connect(
                self.url,
                timeout=seconds,
                server_settings={
                    "statement_timeout": str(self.statement_timeout_ms),
                    "application_name": self.application_name,
                },
            )
        except BaseException:
            self._slot_freed()
            raise

    def _give_back(self, connection: asyncpg.Connection) -> None:
        if self._closed:
            self._discard(connection)
            return
        while self._waiters:
            if _hand(self._waiters.popleft(), connection):
                return
        self._idle.append(connection)

    def _discard(self, connection: asyncpg.Connection) -> None:
        connection.terminate()
        self._slot_freed()

    def _slot_freed(self) -> None:
        """One connection fewer: the first read in line may open one."""
        self._open_count -= 1
        self._wake_one_opener()

    def _wake_one_opener(self) -> None:
        while self._waiters:
            if _hand(self._waiters.popleft(), None):
                return


def _fetching(sql: str, arguments: tuple[Any, ...]) -> Work[Sequence[Any]]:
    """The work of `fetch`: the driver's own coroutine, no frame of ours around it."""

    def fetch(connection: asyncpg.Connection, remaining: float) -> Awaitable[Sequence[Any]]:
        rows: Awaitable[Sequence[Any]] = connection.fetch(sql, *arguments, timeout=remaining)
        return rows

    return fetch


def _hand(waiter: asyncio.Future[Any], value: Any) -> bool:
    """Wake `waiter` with `value`; False if it has already given up."""
    if waiter.done():
        return False
    waiter.set_result(value)
    return True
