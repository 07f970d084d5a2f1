"""The writer of the prediction log: every answered prediction becomes a row of `predictions`,
written behind.

The request path only calls `PredictionLogWriter.record` (or `record_many` for a batch): it
appends a plain tuple to an in-memory deque and returns. No id, no datetime, no lock, no await;
the timestamp is `time.time()`. Everything else runs in two background tasks of the writer:

- the flusher takes what is waiting every `flush_interval` seconds (at once when `batch_rows`
  are waiting), up to `max_write_rows` (10,000) per write, gives them ids, and writes them in
  one transaction through the sink (`sql_sink`: a COPY on PostgreSQL, multi-row INSERTs on
  SQLite), which skips the ids already stored. A batch keeps its ids across retries, so a batch
  whose commit outcome was unknown (a timeout, a reset during COMMIT) is written again without
  duplicates. A failed write is an outage: the batch is retried with a capped exponential
  backoff while new rows keep buffering; the first success ends the outage and replays the
  spill files.
- the spiller keeps memory bounded: past `max_buffer` waiting rows it moves the oldest ones,
  with their ids, to an append-only JSONL spill file (`spill_files`), one `write` + `fsync` per
  chunk in a worker thread (fsync policy: a chunk is durable once the spiller has moved on; rows
  still in memory are what a crash of the process loses).

`close()` writes what is left to the database if it answers within `shutdown_timeout`, spills
the rest and closes the sink; the app closes the writer after the pipeline has stopped
answering, since a row recorded after `close()` would stay in memory.

Cost (docs/performance.md, "Prediction log"): `record()` 0.2 us, the writer's work 6 us a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from churn_mlops.db.prediction_log.guarded_sink import GuardedSink, PredictionSink
from churn_mlops.db.prediction_log.ids import LoggedPrediction, RecordedRow, identify
from churn_mlops.db.prediction_log.spill_files import (
    ClaimedSpill,
    append_spill,
    claim_spill_files,
    spill_files_exist,
)
from churn_mlops.db.prediction_log.stats import PredictionLogStats

logger = logging.getLogger("churn_mlops.db.prediction_log")


class PredictionLogWriter:
    """Write-behind log of answered predictions (see the module docstring).

    Arguments:

    - `sink`: where batches go (`SqlPredictionSink` in the service).
    - `spill_path`: the JSONL spill file; replay files are `<spill_path>.replay-*` next to it.
    - `flush_interval` [0.1 s], `batch_rows` [500]: a batch is written when this many rows wait,
      or this long after the previous write, whichever comes first.
    - `max_write_rows` [10,000]: the most rows one write takes. A backlog (batch requests of
      hundreds of rows, a slow database, the final write at shutdown) is written in a few large
      statements instead of many small ones: at 500 rows per write one writer kept up with
      about 25,000 rows/s and a SIGTERM under a batch-heavy load left rows to the spill file.
    - `max_buffer` [100,000]: rows kept in memory; past it the oldest are spilled.
    - `write_timeout` [5 s]: budget of one batch write; past it the write counts as failed (its
      outcome unknown: the retry carries the same ids).
    - `retry_initial` [`flush_interval`], `retry_max` [5 s]: backoff between failed writes,
      doubling from the first to the cap.
    - `shutdown_timeout` [5 s]: how long `close()` tries the database before spilling the rest.
    """

    def __init__(
        self,
        sink: PredictionSink,
        spill_path: Path,
        *,
        flush_interval: float = 0.1,
        batch_rows: int = 500,
        max_write_rows: int = 10_000,
        max_buffer: int = 100_000,
        write_timeout: float = 5.0,
        retry_initial: float | None = None,
        retry_max: float = 5.0,
        shutdown_timeout: float = 5.0,
    ) -> None:
        if batch_rows < 1 or max_buffer < 1:
            raise ValueError("batch_rows and max_buffer must be at least 1")
        self.spill_path = Path(spill_path)
        self._sink = GuardedSink(
            sink,
            fallback=f"buffering up to {max_buffer} rows, then spilling to {self.spill_path}, "
            "and retrying",
        )
        self._flush_interval = flush_interval
        self._batch_rows = batch_rows
        # A write in progress (or being retried) is not spilled: capping it at the buffer's
        # bound keeps memory within twice `max_buffer` rows.
        self._write_rows = max(batch_rows, min(max_write_rows, max_buffer))
        self._max_buffer = max_buffer
        self._write_timeout = write_timeout
        self._retry_initial = retry_initial if retry_initial is not None else flush_interval
        self._retry_max = max(retry_max, self._retry_initial)
        self._shutdown_timeout = shutdown_timeout
        # The trigger the request path checks: a batch is ready, or the buffer is over its bound.
        self._trigger = min(batch_rows, max_buffer)

        self._buffer: deque[RecordedRow] = deque()
        self._batch: list[LoggedPrediction] | None = None  # formed, not yet acknowledged
        self._spilling = 0  # rows on their way to the spill file
        self._wake = asyncio.Event()
        self._spill_wanted = asyncio.Event()
        self._stopping = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._spiller: asyncio.Task[None] | None = None
        self._closed = False

        self._recorded = 0
        self._flushed = 0
        self._retries = 0
        self._spilled = 0
        self._replayed = 0
        self._unreadable = 0
        self._replay_wanted = False
        self._spilling_logged = False

    # --- the request path ---

    def record(
        self,
        customer_id: str | None,
        probability: float,
        will_churn: bool,
        cached: bool,
        latency_ms: float,
        model_version: str,
        challenger_version: str | None = None,
        challenger_probability: float | None = None,
        features: bytes | None = None,
    ) -> None:
        """Buffer one answered prediction; O(1), never blocks, never raises. `features`: the
        scored row as `features.encode_row` stores it (`CHURN_LOG_FEATURES`)."""
        buffer = self._buffer
        buffer.append(
            (
                customer_id,
                model_version,
                probability,
                will_churn,
                cached,
                latency_ms,
                time.time(),
                challenger_version,
                challenger_probability,
                features,
            )
        )
        self._recorded += 1
        if len(buffer) >= self._trigger:
            self._full()

    def record_many(
        self,
        customer_ids: Sequence[str | None],
        probabilities: Sequence[float],
        will_churn: Sequence[bool],
        cached: Sequence[bool],
        latency_ms: float,
        model_version: str,
        challenger_version: str | None = None,
        challenger_probabilities: Sequence[float] | None = None,
        features: Sequence[bytes] | None = None,
    ) -> None:
        """Buffer the answers of one batch request (one latency, the request's); `features`:
        one encoded row per answer, or None."""
        now = time.time()
        buffer = self._buffer
        absent = [None] * len(customer_ids)
        shadow: Sequence[float | None] = challenger_probabilities or absent
        encoded: Sequence[bytes | None] = absent if features is None else features
        version = challenger_version
        buffer.extend(
            (customer, model_version, p, churns, hit, latency_ms, now, version, score, row)
            for customer, p, churns, hit, score, row in zip(
                customer_ids, probabilities, will_churn, cached, shadow, encoded, strict=True
            )
        )
        self._recorded += len(customer_ids)
        if len(buffer) >= self._trigger:
            self._full()

    def _full(self) -> None:
        if len(self._buffer) >= self._batch_rows:
            self._wake.set()
        if len(self._buffer) > self._max_buffer:
            self._spill_wanted.set()

    # --- life cycle ---

    async def start(self) -> None:
        """Start the background tasks; a spill file left by an earlier run is replayed first."""
        if self._flusher is not None:
            return
        self._flusher = asyncio.create_task(self._run_flusher(), name="prediction-log-flusher")
        self._spiller = asyncio.create_task(self._run_spiller(), name="prediction-log-spiller")

    async def close(self) -> None:
        """Write every buffered row: to the database if it answers within `shutdown_timeout`,
        else to the spill file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._shutdown_timeout
        self._stopping.set()
        self._wake.set()
        self._spill_wanted.set()
        if self._flusher is not None:
            # It finishes its write in progress, within the shutdown budget.
            done, _ = await asyncio.wait({self._flusher}, timeout=self._shutdown_timeout)
            if not done:
                self._flusher.cancel()
        for task in (self._flusher, self._spiller):  # a spill in progress is local: wait for it
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({task})
                if task.done() and not task.cancelled() and task.exception() is not None:
                    logger.error("prediction log task failed", exc_info=task.exception())
        try:
            while self._batch is not None or self._buffer:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if not await self._write_batch(min(remaining, self._write_timeout)):
                    break
        finally:
            leftover = list(self._batch or ())
            self._batch = None
            leftover.extend(identify(self._take(len(self._buffer))))
            if leftover:
                await self._spill(leftover)
                logger.warning(
                    "prediction log: the database did not take %d rows at shutdown; "
                    "spilled to %s (replayed at the next start)",
                    len(leftover),
                    self.spill_path,
                )
            await self._sink.forget_abandoned()
            await self._sink.close()

    def stats(self) -> PredictionLogStats:
        return PredictionLogStats(
            queue_depth=len(self._buffer) + len(self._batch or ()) + self._spilling,
            rows_recorded=self._recorded,
            rows_flushed=self._flushed,
            flushes=self._sink.flushes,
            retries=self._retries,
            rows_spilled=self._spilled,
            rows_replayed=self._replayed,
            flush_failures=self._sink.failures,
            rows_duplicate=self._sink.duplicates,
            outage=self._sink.outage,
            spill_unreadable_lines=self._unreadable,
        )

    # --- flushing ---

    async def _run_flusher(self) -> None:
        try:
            found = await asyncio.to_thread(spill_files_exist, self.spill_path)
        except OSError:
            logger.exception("prediction log: cannot look for spill files at %s", self.spill_path)
            found = False
        self._replay_wanted = self._replay_wanted or found
        backoff = 0.0
        while not self._stopping.is_set():
            if backoff:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await self._stopping.wait()
            elif (
                self._batch is None
                and len(self._buffer) < self._batch_rows
                and not self._replay_wanted
            ):
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._flush_interval):
                        await self._wake.wait()
            if self._stopping.is_set():
                return
            ok = True
            has_rows = self._batch is not None or bool(self._buffer)
            try:
                # Spill files wait for a healthy database, unless they are all there is to write.
                if self._replay_wanted and (not self._sink.outage or not has_rows):
                    self._replay_wanted = False
                    ok = await self._replay()
                    self._replay_wanted = self._replay_wanted or not ok
                if ok and has_rows:
                    ok = await self._write_batch(self._write_timeout)
            except Exception:  # a bug or a disk error must not end the flusher: rows would pile up
                logger.exception("prediction log: the flusher failed; retrying")
                self._replay_wanted = True
                ok = False
            backoff = 0.0 if ok else min(max(backoff * 2, self._retry_initial), self._retry_max)

    def _take(self, count: int) -> list[RecordedRow]:
        buffer = self._buffer
        return [buffer.popleft() for _ in range(min(count, len(buffer)))]

    async def _write_batch(self, budget: float) -> bool:
        """Write the current batch (forming one from the buffer if need be); True on success."""
        if self._batch is None:
            rows = self._take(self._write_rows)
            if not rows:
                # The buffer emptied since the caller looked (spilled while a replay awaited):
                # nothing to write. An empty batch kept here would be retried forever.
                return True
            self._batch = identify(rows)
        else:
            self._retries += 1
        batch = self._batch
        if not await self._sink.write(batch, budget):
            return False
        self._batch = None
        self._flushed += len(batch)
        return True

    # --- spilling and replaying ---

    async def _run_spiller(self) -> None:
        while not self._stopping.is_set():
            await self._spill_wanted.wait()
            self._spill_wanted.clear()
            if self._stopping.is_set():
                return
            excess = len(self._buffer) - self._max_buffer
            if excess <= 0:
                continue
            # Down to a batch below the bound, so that spills come in chunks, not row by row.
            keep = max(self._max_buffer - self._batch_rows, 0)
            rows = identify(self._take(len(self._buffer) - keep))
            if not self._spilling_logged:
                self._spilling_logged = True
                logger.warning(
                    "prediction log: more than %d rows waiting; spilling the oldest to %s",
                    self._max_buffer,
                    self.spill_path,
                )
            await self._spill(rows)

    async def _spill(self, rows: list[LoggedPrediction]) -> None:
        self._spilling += len(rows)
        try:
            await asyncio.to_thread(append_spill, self.spill_path, rows)
        except OSError:
            # The disk refused too: keep the rows in memory rather than lose them.
            logger.exception("prediction log: cannot write the spill file %s", self.spill_path)
            self._buffer.extendleft(reversed([tuple(row[1:]) for row in rows]))  # type: ignore[misc]
            return
        finally:
            self._spilling -= len(rows)
        self._spilled += len(rows)
        self._replay_wanted = True
        self._sink.spilled(len(rows))

    async def _replay(self) -> bool:
        """Insert the rows of every spill file; True when none is left (other than files another
        worker is replaying)."""
        try:
            claimed = await asyncio.to_thread(claim_spill_files, self.spill_path)
        except OSError:
            logger.exception("prediction log: cannot read the spill files at %s", self.spill_path)
            return True
        try:
            for replay in claimed:
                if not await self._replay_file(replay):
                    return False
            return True
        finally:
            for replay in claimed:
                await asyncio.to_thread(replay.close)

    async def _replay_file(self, replay: ClaimedSpill) -> bool:
        while True:
            chunk = await asyncio.to_thread(replay.read, self._batch_rows)
            if not chunk:
                break
            if not await self._sink.write(chunk, self._write_timeout):
                return False
            self._replayed += len(chunk)
            # Keep up with the present while catching up with the past.
            if len(self._buffer) >= self._batch_rows and not await self._write_batch(
                self._write_timeout
            ):
                return False
        self._unreadable += replay.unreadable
        await asyncio.to_thread(replay.finish)
        logger.info("prediction log: replayed %d rows from %s", replay.rows_read, replay.path.name)
        return True
