"""Micro-batching: concurrent `/predict` requests share one model call.

Requests append their encoded row to a pending list and await a future. The first one of a
batch schedules a flush: with `max_wait == 0` at the end of the current event-loop turn
(`call_soon`), so a batch is whatever arrived in that turn, and at low load a lone request
waits for nothing; with `max_wait > 0` after that delay, or at once when `max_batch_size`
rows are pending. There is no polling timer: an idle batcher schedules nothing.

Load shedding: `submit` refuses at once (`Overloaded`, a 503 with Retry-After) when `max_queue`
rows are already waiting, or when the oldest waiting row has waited longer than `max_wait +
max_queue_delay` (the intended batching wait plus the tolerated queueing). Under saturation the
pending list is what arrived during one long event-loop turn; the delay bound caps how much
prediction work a turn takes on, and the rest of that turn's requests get a cheap 503 instead of
making every request slower. Each turn starts afresh, so there is no state to get stuck in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from churn_mlops.core.errors import ServiceError
from churn_mlops.model.features import FloatMatrix
from churn_mlops.model.inference import Probabilities

logger = logging.getLogger("churn_mlops.batcher")

RETRY_AFTER_SECONDS = 1


class Overloaded(ServiceError):
    """More requests are waiting for the model than the queue holds."""

    status = 503
    headers: Mapping[str, str] | None = MappingProxyType({"Retry-After": str(RETRY_AFTER_SECONDS)})


class ModelRunner:
    """Runs model calls inline, or in one worker thread when they are large enough to pay."""

    def __init__(
        self, score: Callable[[FloatMatrix], Probabilities], offload_min_rows: int
    ) -> None:
        self.score = score
        self.offload_min_rows = offload_min_rows
        # One thread: model calls are CPU-bound, a second would only fight for the same cores.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="churn-model")

    def offloads(self, rows: int) -> bool:
        return rows >= self.offload_min_rows

    async def run(self, rows: FloatMatrix) -> Probabilities:
        if not self.offloads(len(rows)):
            return self.score(rows)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.score, rows)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


@dataclass
class BatcherStats:
    model_calls: int = 0
    rows: int = 0
    shed: int = 0
    cancelled: int = 0
    failed_batches: int = 0


class MicroBatcher:
    """Gathers single-row predictions into batched model calls; one future per request."""

    def __init__(
        self,
        runner: ModelRunner,
        *,
        max_batch_size: int = 32,
        max_wait: float = 0.0,
        max_queue: int = 256,
        max_queue_delay: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        observe_queue_wait: Callable[[float], None] | None = None,
    ) -> None:
        self.runner = runner
        # Called once a flush with the wait of its oldest request (metrics), not per request.
        self._observe_queue_wait = observe_queue_wait
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.max_queue = max_queue
        self.max_queue_delay = max_queue_delay
        self._clock = clock
        self.stats = BatcherStats()
        self._pending: list[tuple[FloatMatrix, asyncio.Future[float]]] = []
        self._flush_handle: asyncio.Handle | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False
        self._oldest_submit = 0.0

    @property
    def queued(self) -> int:
        """Requests waiting for a model call to start."""
        return len(self._pending)

    async def predict(self, row: FloatMatrix) -> float:
        """The churn probability of one encoded (1, n_features) row."""
        return await self.submit(row)

    def submit(self, row: FloatMatrix) -> asyncio.Future[float]:
        if self._closed:
            raise Overloaded("The service is shutting down; retry on another instance.")
        if self._pending:
            waited = self._clock() - self._oldest_submit
            overdue = waited > self.max_wait + self.max_queue_delay
            if len(self._pending) >= self.max_queue or overdue:
                self.stats.shed += 1
                raise Overloaded("Too many predictions are waiting; retry shortly.")
        else:
            self._oldest_submit = self._clock()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[float] = loop.create_future()
        self._pending.append((row, future))
        if self.max_wait > 0 and len(self._pending) >= self.max_batch_size:
            self._schedule(loop, now=True)
        elif self._flush_handle is None:
            self._schedule(loop, now=self.max_wait <= 0)
        return future

    def _schedule(self, loop: asyncio.AbstractEventLoop, *, now: bool) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        if now:
            self._flush_handle = loop.call_soon(self._flush)
        else:
            self._flush_handle = loop.call_later(self.max_wait, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        pending, self._pending = self._pending, []
        if pending and self._observe_queue_wait is not None:
            self._observe_queue_wait(self._clock() - self._oldest_submit)
        live = [(row, future) for row, future in pending if not future.done()]
        self.stats.cancelled += len(pending) - len(live)
        for start in range(0, len(live), self.max_batch_size):
            self._run_batch(live[start : start + self.max_batch_size])

    def _run_batch(self, batch: list[tuple[FloatMatrix, asyncio.Future[float]]]) -> None:
        rows = np.concatenate([row for row, _ in batch]) if len(batch) > 1 else batch[0][0]
        futures = [future for _, future in batch]
        self.stats.model_calls += 1
        self.stats.rows += len(batch)
        if self.runner.offloads(len(batch)):
            task = asyncio.get_running_loop().create_task(self._run_offloaded(rows, futures))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            return
        try:
            probabilities = self.runner.score(rows)
        except Exception as error:
            self._fail(futures, error)
        else:
            _resolve(futures, probabilities)

    async def _run_offloaded(self, rows: FloatMatrix, futures: list[asyncio.Future[float]]) -> None:
        try:
            probabilities = await self.runner.run(rows)
        except Exception as error:
            self._fail(futures, error)
        else:
            _resolve(futures, probabilities)

    def _fail(self, futures: list[asyncio.Future[float]], error: Exception) -> None:
        self.stats.failed_batches += 1
        logger.error("model call failed for a batch of %d: %r", len(futures), error)
        for future in futures:
            if not future.done():
                future.set_exception(error)

    async def close(self) -> None:
        """Refuse new requests, answer every queued one, wait for running model calls."""
        self._closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


def _resolve(futures: list[asyncio.Future[float]], probabilities: Probabilities) -> None:
    for future, probability in zip(futures, probabilities.tolist(), strict=True):
        if not future.done():  # cancelled while the model ran
            future.set_result(probability)
