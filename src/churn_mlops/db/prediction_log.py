"""The prediction log: every answered prediction becomes a row of `predictions`, written behind.

The request path only calls `PredictionLogWriter.record` (or `record_many` for a batch): it
appends a plain tuple to an in-memory deque and returns. No id, no datetime, no lock, no await;
the timestamp is `time.time()`. Everything else runs in two background tasks of the writer:

- the flusher takes up to `batch_rows` rows every `flush_interval` seconds (at once when that
  many are waiting), gives them ids, and writes them with ONE multi-row
  `INSERT ... ON CONFLICT (id) DO NOTHING` through the sink. A batch keeps its ids across
  retries, so a batch whose commit outcome was unknown (a timeout, a reset during COMMIT) is
  written again without duplicates. A failed write is an outage: the batch is retried with a
  capped exponential backoff while new rows keep buffering; the first success ends the outage
  and replays the spill files.
- the spiller keeps memory bounded: past `max_buffer` waiting rows it moves the oldest ones,
  with their ids, to an append-only JSONL spill file, one `write` + `fsync` per chunk in a
  worker thread (fsync policy: a chunk is durable once the spiller has moved on; rows still in
  memory are what a crash of the process loses).

Spill files are safe to share between the workers of one host and to replay after a crash:
appends hold an exclusive `flock` and check that the path still names the file they opened;
a replay first renames the live file to `<path>.replay-<random>` under that lock (later spills
start a new file), then holds a non-blocking `flock` on the renamed file while it inserts its
rows chunk by chunk, and unlinks it only when every chunk is in the database. A crash mid-replay
leaves the renamed file, which the next replay (at start-up or after an outage) takes up again;
rows that already arrived are skipped by their ids. `close()` writes what is left to the
database if it answers within `shutdown_timeout`, and spills the rest; the app closes the
writer after the pipeline has stopped answering, since a row recorded after `close()` would stay
in memory.

Cost on the request path (docs/performance.md, "Prediction log"): `record()` about 0.2 us;
all the writer's work in the service process about 6 us of CPU per prediction.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import orjson
from sqlalchemy import Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Insert

from churn_mlops.settings import Settings

logger = logging.getLogger("churn_mlops.db.prediction_log")

RecordedRow = tuple[str | None, str, float, bool, bool, float, float]
"""What `record` buffers: external customer id, model version, probability, will_churn, cached,
latency in milliseconds, created_at as seconds since the epoch."""


class LoggedPrediction(NamedTuple):
    """A buffered row with its id: what the sink writes and the spill file holds."""

    id: str
    """A UUID as 32 lowercase hex digits (what PostgreSQL parses and the spill file holds)."""
    external_customer_id: str | None
    model_version: str
    probability: float
    will_churn: bool
    cached: bool
    latency_ms: float
    created_at: float
    """Seconds since the epoch (UTC)."""


class PredictionRecorder(Protocol):
    """What the prediction pipeline calls after each answer (see `PredictionLogWriter`)."""

    def record(
        self,
        customer_id: str | None,
        probability: float,
        will_churn: bool,
        cached: bool,
        latency_ms: float,
        model_version: str,
    ) -> None: ...

    def record_many(
        self,
        customer_ids: Sequence[str | None],
        probabilities: Sequence[float],
        will_churn: Sequence[bool],
        cached: Sequence[bool],
        latency_ms: float,
        model_version: str,
    ) -> None: ...


class PredictionSink(Protocol):
    """Where batches go: an idempotent multi-row insert."""

    async def write(self, rows: Sequence[LoggedPrediction]) -> int:
        """Insert `rows` in one transaction, skipping ids already stored; the number inserted."""
        ...


@dataclass(frozen=True)
class PredictionLogStats:
    """Counters of one writer (one worker process), for metrics."""

    queue_depth: int
    """Rows in memory: waiting for the database (a batch being retried included) or on their
    way to the spill file."""
    rows_recorded: int
    rows_flushed: int
    """Rows the database acknowledged from memory (replayed rows are counted apart)."""
    flushes: int
    """Successful batch writes, replays included."""
    retries: int
    """Batch writes attempted again after a failure."""
    rows_spilled: int
    rows_replayed: int
    """Rows written to the database from spill files."""
    flush_failures: int
    """Failed batch writes (errors and timeouts)."""
    rows_duplicate: int
    """Acknowledged rows the database already had (a retry of a batch that had committed)."""
    outage: bool
    """Whether the last write failed."""
    spill_unreadable_lines: int
    """Lines of spill files that were not a row (a write torn by a crash), skipped."""


class SqlPredictionSink:
    """Writes batches to the `predictions` table through an AsyncEngine, on PostgreSQL or SQLite.

    One statement per batch, `customer_id` resolved in it from the unique
    `customers.external_id`, `ON CONFLICT (id) DO NOTHING`:

    - PostgreSQL: `INSERT ... SELECT FROM json_array_elements($1::json) LEFT JOIN customers`:
      the batch goes as one JSON array of rows (orjson, the spill file's format), the statement
      text never changes (asyncpg prepares it once). About 3.6 us of Python per row, against
      4.6 us for one array parameter per column (`unnest`) and 13-20 us for SQLAlchemy's
      multi-row VALUES, whose per-row subqueries also cost the server about twice as much
      (500-row batches on the local PostgreSQL; docs/performance.md, "Prediction log").
    - SQLite: SQLAlchemy's "insertmanyvalues" renders the executemany of an INSERT ... RETURNING
      as one multi-row VALUES statement (up to 1000 rows), with a scalar subquery per row.
    """

    def __init__(self, engine: AsyncEngine, predictions: Table, customers: Table) -> None:
        self.engine = engine
        self._statement = _insert_statement(engine.dialect.name, predictions, customers)
        self._json_sql = (
            _json_insert_sql(engine, predictions, customers)
            if engine.dialect.name == "postgresql"
            else None
        )

    @classmethod
    def for_engine(cls, engine: AsyncEngine) -> SqlPredictionSink:
        from churn_mlops.db.models import Base

        tables = Base.metadata.tables
        return cls(engine, tables["predictions"], tables["customers"])

    async def write(self, rows: Sequence[LoggedPrediction]) -> int:
        if not rows:
            # SQLAlchemy would run an empty executemany as one INSERT of defaults, which fails.
            return 0
        if self._json_sql is not None:
            batch = orjson.dumps(rows, default=tuple).decode()
            async with self.engine.begin() as connection:
                result = await connection.exec_driver_sql(self._json_sql, (batch,))
                return int(result.rowcount)
        parameters = [
            {
                "id": uuid.UUID(hex=row.id),
                "lookup_external_id": row.external_customer_id,
                "external_customer_id": row.external_customer_id,
                "model_version": row.model_version,
                "probability": row.probability,
                "will_churn": row.will_churn,
                "cached": row.cached,
                "latency_ms": row.latency_ms,
                "created_at": datetime.fromtimestamp(row.created_at, UTC),
            }
            for row in rows
        ]
        async with self.engine.begin() as connection:
            result = await connection.execute(self._statement, parameters)
            return len(result.all())


def _json_insert_sql(engine: AsyncEngine, predictions: Table, customers: Table) -> str:
    """The PostgreSQL insert of a batch given as one JSON array of `LoggedPrediction` arrays."""
    quote = engine.dialect.identifier_preparer.quote
    casts = ("uuid", "varchar", "varchar", "float8", "bool", "bool", "float8", "float8")
    values = [f"(e->>{n})::{kind}" for n, kind in enumerate(casts)]
    values[-1] = f"to_timestamp({values[-1]})"  # created_at: seconds since the epoch
    target = ", ".join(quote(name) for name in ("customer_id", *LoggedPrediction._fields))
    # Identifiers come from our own table metadata, quoted; the batch is a bind parameter.
    return (
        f"INSERT INTO {quote(predictions.name)} ({target}) "  # noqa: S608
        f"SELECT c.{quote('id')}, {', '.join(values)} "
        "FROM json_array_elements($1::json) AS e "
        f"LEFT JOIN {quote(customers.name)} AS c ON c.{quote('external_id')} = e->>1 "
        f"ON CONFLICT ({quote('id')}) DO NOTHING"
    )


def _insert_statement(dialect: str, predictions: Table, customers: Table) -> Insert:
    if dialect == "postgresql":
        insert: Callable[[Table], Any] = postgresql.insert
    elif dialect == "sqlite":
        insert = sqlite.insert
    else:
        raise ValueError(f"the prediction log supports PostgreSQL and SQLite, not {dialect}")
    customer_id = (
        select(customers.c.id)
        .where(customers.c.external_id == bindparam("lookup_external_id"))
        .scalar_subquery()
    )
    # RETURNING makes SQLAlchemy use insertmanyvalues (one multi-row statement) for the
    # executemany on asyncpg and aiosqlite, and tells how many rows were new.
    statement: Insert = (
        insert(predictions)
        .values(customer_id=customer_id)
        .on_conflict_do_nothing(index_elements=[predictions.c.id])
        .returning(predictions.c.id)
    )
    return statement


# The variant nibble of a UUID (binary 10xx) from any hex digit.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def identify(rows: Sequence[RecordedRow]) -> list[LoggedPrediction]:
    """Give rows UUIDv7-style ids: the row's own millisecond timestamp, then 74 random bits
    (time-ordered, so PostgreSQL appends to the primary key's index instead of scattering).
    Made as hex text directly, the form the insert and the spill file take (1.2 us per row
    against 1.5 us for `uuid.UUID` objects, which would then need converting)."""
    randomness = os.urandom(10 * len(rows)).hex()
    identified = []
    for index, row in enumerate(rows):
        bits = randomness[20 * index : 20 * index + 20]
        millis = int(row[6] * 1000) & 0xFFFF_FFFF_FFFF
        row_id = f"{millis:012x}7{bits[:3]}{_VARIANT[bits[3]]}{bits[4:7]}{bits[7:19]}"
        identified.append(LoggedPrediction(row_id, *row))
    return identified


class PredictionLogWriter:
    """Write-behind log of answered predictions (see the module docstring).

    Arguments:

    - `sink`: where batches go (`SqlPredictionSink` in the service).
    - `spill_path`: the JSONL spill file; replay files are `<spill_path>.replay-*` next to it.
    - `flush_interval` [0.1 s], `batch_rows` [500]: a batch is written when this many rows wait,
      or this long after the previous write, whichever comes first.
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
        max_buffer: int = 100_000,
        write_timeout: float = 5.0,
        retry_initial: float | None = None,
        retry_max: float = 5.0,
        shutdown_timeout: float = 5.0,
    ) -> None:
        if batch_rows < 1 or max_buffer < 1:
            raise ValueError("batch_rows and max_buffer must be at least 1")
        self._sink = sink
        self.spill_path = Path(spill_path)
        self._flush_interval = flush_interval
        self._batch_rows = batch_rows
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
        self._abandoned: set[asyncio.Task[int]] = set()
        self._closed = False

        self._recorded = 0
        self._flushed = 0
        self._flushes = 0
        self._retries = 0
        self._spilled = 0
        self._replayed = 0
        self._failures = 0
        self._duplicates = 0
        self._unreadable = 0
        self._outage_since: float | None = None
        self._failures_in_outage = 0
        self._spilled_in_outage = 0
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
    ) -> None:
        """Buffer one answered prediction; O(1), never blocks, never raises."""
        buffer = self._buffer
        buffer.append(
            (customer_id, model_version, probability, will_churn, cached, latency_ms, time.time())
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
    ) -> None:
        """Buffer the answers of one batch request (one latency, the request's)."""
        now = time.time()
        buffer = self._buffer
        buffer.extend(
            (customer_id, model_version, probability, churns, hit, latency_ms, now)
            for customer_id, probability, churns, hit in zip(
                customer_ids, probabilities, will_churn, cached, strict=True
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
            await self._forget_abandoned()

    def stats(self) -> PredictionLogStats:
        return PredictionLogStats(
            queue_depth=len(self._buffer) + len(self._batch or ()) + self._spilling,
            rows_recorded=self._recorded,
            rows_flushed=self._flushed,
            flushes=self._flushes,
            retries=self._retries,
            rows_spilled=self._spilled,
            rows_replayed=self._replayed,
            flush_failures=self._failures,
            rows_duplicate=self._duplicates,
            outage=self._outage_since is not None,
            spill_unreadable_lines=self._unreadable,
        )

    # --- flushing ---

    async def _run_flusher(self) -> None:
        try:
            found = await asyncio.to_thread(_spill_files_exist, self.spill_path)
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
                if self._replay_wanted and (self._outage_since is None or not has_rows):
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
            rows = self._take(self._batch_rows)
            if not rows:
                # The buffer emptied since the caller looked (spilled while a replay awaited):
                # nothing to write. An empty batch kept here would be retried forever.
                return True
            self._batch = identify(rows)
        else:
            self._retries += 1
        batch = self._batch
        if not await self._write(batch, budget):
            return False
        self._batch = None
        self._flushed += len(batch)
        return True

    async def _write(self, rows: list[LoggedPrediction], budget: float) -> bool:
        """One sink write bounded by `budget` seconds; failures go to the stats and the log."""
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
        self._flushes += 1
        self._duplicates += len(rows) - inserted
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

    def _failed(self, error: BaseException) -> None:
        self._failures += 1
        self._failures_in_outage += 1
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            logger.warning(
                "prediction log: database unavailable (%s: %s); buffering up to %d rows, then "
                "spilling to %s, and retrying",
                type(error).__name__,
                error,
                self._max_buffer,
                self.spill_path,
            )

    def _abandon(self, write: asyncio.Task[int]) -> None:
        write.cancel()
        self._abandoned.add(write)
        write.add_done_callback(_settled(self._abandoned))

    async def _forget_abandoned(self) -> None:
        if self._abandoned:
            await asyncio.wait(set(self._abandoned), timeout=0.5)

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
        if self._outage_since is not None:
            self._spilled_in_outage += len(rows)

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
            if not await self._write(chunk, self._write_timeout):
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


def _settled(pending: set[asyncio.Task[int]]) -> Callable[[asyncio.Task[int]], None]:
    def done(task: asyncio.Task[int]) -> None:
        pending.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: the failure was counted when the write was abandoned

    return done


# --- the spill files (blocking: called in a worker thread) ---

_REPLAY_INFIX = ".replay-"


def _encode(rows: Iterable[LoggedPrediction]) -> bytes:
    # A leading newline ends a line a crash may have torn, so only that line is lost.
    return b"\n" + b"".join(
        orjson.dumps(
            [
                row.id,
                row.external_customer_id,
                row.model_version,
                row.probability,
                row.will_churn,
                row.cached,
                row.latency_ms,
                row.created_at,
            ]
        )
        + b"\n"
        for row in rows
    )


def _decode(line: bytes) -> LoggedPrediction:
    values = orjson.loads(line)
    return LoggedPrediction(uuid.UUID(hex=values[0]).hex, *values[1:])


@contextlib.contextmanager
def _locked_live_file(path: Path) -> Iterator[int]:
    """The spill file at `path`, opened for appending and exclusively locked; retried when a
    replay renamed it between the open and the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                continue
            if current.st_ino == os.fstat(fd).st_ino:
                yield fd
                return
        finally:
            os.close(fd)


def append_spill(path: Path, rows: Sequence[LoggedPrediction]) -> None:
    """Append `rows` to the spill file with one write and an fsync."""
    data = memoryview(_encode(rows))
    with _locked_live_file(path) as fd:
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)


def _spill_files_exist(path: Path) -> bool:
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > 0:
            return True
    return any(path.parent.glob(path.name + _REPLAY_INFIX + "*"))


class ClaimedSpill:
    """A replay file this process holds the lock of, read in chunks."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._file = os.fdopen(os.dup(fd), "rb")
        self.rows_read = 0
        self.unreadable = 0
        self.closed = False

    def read(self, count: int) -> list[LoggedPrediction]:
        rows: list[LoggedPrediction] = []
        while len(rows) < count:
            line = self._file.readline()
            if not line:
                break
            if not line.strip():
                continue
            try:
                rows.append(_decode(line))
            except (ValueError, TypeError, IndexError):
                self.unreadable += 1
                logger.warning("prediction log: skipping an unreadable line of %s", self.path)
        self.rows_read += len(rows)
        return rows

    def finish(self) -> None:
        """Every row is in the database: remove the file (still holding its lock)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._file.close()
            os.close(self._fd)


def claim_spill_files(path: Path) -> list[ClaimedSpill]:
    """Move the live spill file aside and lock every replay file no other process holds."""
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > 0:
            with _locked_live_file(path) as _:
                target = path.with_name(path.name + _REPLAY_INFIX + uuid.uuid4().hex[:12])
                os.rename(path, target)
    claimed = []
    for candidate in sorted(path.parent.glob(path.name + _REPLAY_INFIX + "*")):
        try:
            fd = os.open(candidate, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                continue  # another worker is replaying it
            raise
        if os.fstat(fd).st_nlink == 0:  # replayed and removed while we waited
            os.close(fd)
            continue
        claimed.append(ClaimedSpill(candidate, fd))
    return claimed


def build_prediction_log(settings: Settings, engine: AsyncEngine) -> PredictionLogWriter:
    """The service's writer on `engine`, configured by the `prediction_log_*` settings."""
    flush_interval = settings.prediction_log_flush_ms / 1000.0
    return PredictionLogWriter(
        SqlPredictionSink.for_engine(engine),
        settings.prediction_log_spill_path,
        flush_interval=flush_interval,
        batch_rows=settings.prediction_log_batch_rows,
        max_buffer=settings.prediction_log_max_buffer,
        write_timeout=settings.prediction_log_write_timeout_seconds,
        retry_initial=flush_interval,
        retry_max=settings.prediction_log_retry_max_seconds,
        shutdown_timeout=settings.prediction_log_shutdown_timeout_seconds,
    )
