"""The sink as the writer uses it: every write bounded in time, failures counted as an outage."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from churn_mlops.db.prediction_log.ids import LoggedPrediction

logger = logging.getLogger("churn_mlops.db.prediction_log")
# How long closing waits for the sink to let go of its connection once the rows are written.
SINK_CLOSE_SECONDS = 1.0


class PredictionSink(Protocol):
    """Where batches go: an idempotent multi-row insert."""

    async def write(self, rows: Sequence[LoggedPrediction]) -> int:
        """Insert `rows` in one transaction, skipping ids already stored; the number inserted."""
        ...

    async def close(self) -> None:
        """Let go of what the sink holds (connections, threads); a later write may reopen."""
        ...


class GuardedSink:
    """Writes to `sink` that give up after a budget, and the outage their failures make.

    A write that does not answer within its budget counts as failed and is abandoned, never
    awaited again: its outcome is unknown, which is safe because a retry carries the same ids.
    An outage starts at the first failed write and ends at the next successful one; each end is
    logged once, whatever the number of writes in between. `fallback` says what the caller does
    with its rows meanwhile, for the log line of the outage's start.
    """

    def __init__(self, sink: PredictionSink, fallback: str) -> None:
        self._sink = sink
        self._fallback = fallback
        self._abandoned: set[asyncio.Task[int]] = set()
        self.flushes = 0
        """Successful writes."""
        self.failures = 0
        """Failed writes (errors and timeouts)."""
        self.duplicates = 0
        """Acknowledged rows the sink already had (a retry of a write that had committed)."""
        self._outage_since: float | None = None
        self._failures_in_outage = 0
        self._spilled_in_outage = 0

    @property
    def outage(self) -> bool:
        """Whether the last write failed."""
        return self._outage_since is not None

    def spilled(self, rows: int) -> None:
        """Count rows the caller spilled, for the log line that ends an outage."""
        if self._outage_since is not None:
            self._spilled_in_outage += rows

    async def write(self, rows: Sequence[LoggedPrediction], budget: float) -> bool:
        """One sink write bounded by `budget` seconds; True on success."""
        write = asyncio.create_task(self._sink.write(rows))
        try:
            done, _ = await asyncio.wait({write}, timeout=budget)
        except asyncio.CancelledError:
            self._abandon(write)
            raise
        if not done:
            # A write stuck on a silent connection: leave it (its rows are retried with the same
            # ids), but never wait for it again.
            self._abandon(write)
            self._failed(TimeoutError(f"no answer within {budget:.3g} s"))
            return False
        error = write.exception()
        if error is not None:
            self._failed(error)
            return False
        inserted = write.result()
        self.flushes += 1
        self.duplicates += len(rows) - inserted
        if self._outage_since is not None:
            logger.info(
                "prediction log: database back after %.1f s (%d failed writes, %d rows spilled)",
                time.monotonic() - self._outage_since,
                self._failures_in_outage,
                self._spilled_in_outage,
            )
            self._outage_since = None
            self._failures_in_outage = 0
            self._spilled_in_outage = 0
        return True

    async def close(self, budget: float = SINK_CLOSE_SECONDS) -> None:
        """Close the sink, waiting at most `budget` seconds: a write stuck in it is left."""
        closing = asyncio.ensure_future(self._sink.close())
        done, _ = await asyncio.wait({closing}, timeout=budget)
        if not done:
            logger.warning("prediction log: the sink did not close within %.3g s", budget)
        elif (error := closing.exception()) is not None:
            logger.warning(
                "prediction log: closing the sink failed (%s: %s)", type(error).__name__, error
            )

    async def forget_abandoned(self) -> None:
        """Give abandoned writes a last moment to settle (at shutdown)."""
        if self._abandoned:
            await asyncio.wait(set(self._abandoned), timeout=0.5)

    def _failed(self, error: BaseException) -> None:
        self.failures += 1
        self._failures_in_outage += 1
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            logger.warning(
                "prediction log: database unavailable (%s: %s); %s",
                type(error).__name__,
                error,
                self._fallback,
            )

    def _abandon(self, write: asyncio.Task[int]) -> None:
        write.cancel()
        self._abandoned.add(write)
        write.add_done_callback(_settled(self._abandoned))


def _settled(pending: set[asyncio.Task[int]]) -> Callable[[asyncio.Task[int]], None]:
    def done(task: asyncio.Task[int]) -> None:
        pending.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: the failure was counted when the write was abandoned

    return done
