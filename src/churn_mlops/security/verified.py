"""What the credential store last said about a key or a user, kept in the worker.

- Fresh (answered less than `ttl` ago): served from memory, no I/O; the hot path is a dict
  lookup.
- Expired: looked up again, one lookup per credential at a time (concurrent requests share it),
  and waited for at most `budget` seconds. A healthy store answers in about a millisecond, so a
  revoked key or a deleted or disabled user is refused within `ttl`.
- A lookup fails or is late: the store counts as unreachable for `retry_seconds`. Meanwhile a
  credential answered within `stale_seconds` is served its last answer without waiting (an
  outage degrades, it does not lock out known callers), and any other is refused at once with
  StoreUnavailable. After `retry_seconds` the next lookup waits on the store again, for at most
  `budget`.

So no request waits on the store longer than `budget`, however the store fails (refuses,
resets, or silently drops packets, where a connect alone waits 60 s in asyncpg): the lookup
runs in a task of its own, abandoned by its callers after `budget` and cancelled after
`lookup_seconds`; if it answers in between, its answer is kept for the next request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

logger = logging.getLogger("churn_mlops.security")

T = TypeVar("T")


class StoreUnavailable(Exception):
    """The store is unreachable and the credential has no recent answer to fall back on."""


class StoreOutage:
    """Whether lookups of one store may wait on it; shared by the records of that store."""

    def __init__(self, retry_seconds: float, clock: Callable[[], float]) -> None:
        self.retry_seconds = retry_seconds
        self.failures = 0
        """Lookups that failed or were late, since start."""
        self._clock = clock
        self._until = 0.0
        self._down = False

    def active(self, now: float) -> bool:
        """Whether lookups should not wait (the store failed less than `retry_seconds` ago)."""
        return now < self._until

    def failed(self, reason: str) -> None:
        self.failures += 1
        self._until = self._clock() + self.retry_seconds
        if not self._down:
            self._down = True
            logger.warning(
                "credential store unreachable (%s): serving recently verified credentials, "
                "refusing others with 503",
                reason,
            )

    def answered(self) -> None:
        self._until = 0.0
        if self._down:
            self._down = False
            logger.info("credential store answers again")


@dataclass(slots=True)
class _Record(Generic[T]):
    value: T
    fresh_until: float
    answered_at: float


class VerifiedRecords(Generic[T]):
    """The store's last answer per credential, with bounded waits (see the module docstring)."""

    def __init__(
        self,
        outage: StoreOutage,
        *,
        ttl: float,
        stale_seconds: float,
        budget: float,
        size: int,
        clock: Callable[[], float] = time.monotonic,
        lookup_seconds: float = 5.0,
    ) -> None:
        self.outage = outage
        self.ttl = ttl
        self.stale_seconds = stale_seconds
        self.budget = budget
        self.size = size
        self.lookup_seconds = max(lookup_seconds, budget)
        self._clock = clock
        self._records: dict[str, _Record[T]] = {}
        self._lookups: dict[str, asyncio.Task[T | None]] = {}

    def fresh(self, credential: str, now: float) -> T | None:
        """The answer for `credential` if it is fresh at `now` (the hot path), else None."""
        record = self._records.get(credential)
        if record is None or record.fresh_until <= now:
            return None
        return record.value

    def fresh_until(self, credential: str) -> float:
        """Until when the answer for `credential` is fresh (0.0 if there is none)."""
        record = self._records.get(credential)
        return 0.0 if record is None else record.fresh_until

    async def verify(self, credential: str, lookup: Callable[[], Awaitable[T | None]]) -> T | None:
        """The store's answer for `credential` (None: the store does not know it), or its last
        answer while the store is unreachable; StoreUnavailable when there is none to give."""
        now = self._clock()
        record = self._records.get(credential)
        if record is not None and record.fresh_until > now:
            return record.value
        if record is not None and now - record.answered_at >= self.stale_seconds:
            record = None
        if self.outage.active(now):
            if record is None:
                raise StoreUnavailable()
            return record.value
        task = self._lookups.get(credential)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._look_up(credential, lookup))
            self._lookups[credential] = task
            task.add_done_callback(lambda done: self._lookup_done(credential, done))
        # asyncio.wait neither cancels the lookup nor waits for it past the budget.
        await asyncio.wait((task,), timeout=self.budget)
        if not task.done():
            self.outage.failed(f"no answer within {self.budget:g} s")
        elif not task.cancelled() and task.exception() is None:
            return task.result()
        if record is None:
            raise StoreUnavailable()
        return record.value

    async def close(self, wait_seconds: float = 1.0) -> None:
        """Cancel the lookups still running (at shutdown), waiting at most `wait_seconds` for
        them to unwind (a cancelled query waits on the silent database in asyncpg)."""
        lookups = list(self._lookups.values())
        for task in lookups:
            task.cancel()
        if lookups:
            await asyncio.wait(lookups, timeout=wait_seconds)

    def drop(self, matches: Callable[[T], bool]) -> int:
        """Forget every answer `matches` selects; how many."""
        stale = [key for key, record in self._records.items() if matches(record.value)]
        for key in stale:
            del self._records[key]
        return len(stale)

    async def _look_up(
        self, credential: str, lookup: Callable[[], Awaitable[T | None]]
    ) -> T | None:
        # Fresh from when the store was asked: a change committed after the store read it is
        # seen within `ttl` of the change.
        asked_at = self._clock()
        try:
            async with asyncio.timeout(self.lookup_seconds):
                value = await lookup()
        except Exception as error:  # any failure of the store: refused, reset, timed out
            self.outage.failed(type(error).__name__)
            raise
        self.outage.answered()
        if value is None:
            self._records.pop(credential, None)
            return None
        if credential not in self._records and len(self._records) >= self.size:
            del self._records[next(iter(self._records))]  # the oldest answered
        self._records[credential] = _Record(value, asked_at + self.ttl, asked_at)
        return value

    def _lookup_done(self, credential: str, task: asyncio.Task[T | None]) -> None:
        if self._lookups.get(credential) is task:
            del self._lookups[credential]
        if not task.cancelled():
            task.exception()  # retrieved here: a failure is the outage's business
