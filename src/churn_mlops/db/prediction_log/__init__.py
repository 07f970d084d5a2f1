"""The prediction log: every answered prediction becomes a row of `predictions`, written behind.

- `writer`: `PredictionLogWriter`, what the request path calls, and its two background tasks
  (the flusher and the spiller), with its stats;
- `guarded_sink`: the sink as the writer sees it, each write bounded in time, failures counted
  as one outage;
- `sql_sink`: `SqlPredictionSink`, one idempotent write per batch: on PostgreSQL a binary COPY
  on a connection of the log's own (`pg_copy`), on a SQLite file from a thread (`sqlite_sink`);
- `spill_files`: the append-only files that hold rows while the database is away, shared by the
  workers of one host and replayed after a crash;
- `ids`: the rows, and their time-ordered UUIDv7-style ids.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

# Re-exported while importers move to churn_mlops.core.protocols, where the protocol lives.
from churn_mlops.core.protocols import PredictionRecorder
from churn_mlops.db.prediction_log.guarded_sink import PredictionSink
from churn_mlops.db.prediction_log.ids import LoggedPrediction, RecordedRow, identify
from churn_mlops.db.prediction_log.spill_files import (
    ClaimedSpill,
    append_spill,
    claim_spill_files,
)
from churn_mlops.db.prediction_log.sql_sink import SqlPredictionSink
from churn_mlops.db.prediction_log.stats import PredictionLogStats
from churn_mlops.db.prediction_log.writer import PredictionLogWriter
from churn_mlops.settings import Settings

__all__ = [
    "ClaimedSpill",
    "LoggedPrediction",
    "PredictionLogStats",
    "PredictionLogWriter",
    "PredictionRecorder",
    "PredictionSink",
    "RecordedRow",
    "SqlPredictionSink",
    "append_spill",
    "build_prediction_log",
    "claim_spill_files",
    "identify",
]


def build_prediction_log(settings: Settings, engine: AsyncEngine) -> PredictionLogWriter:
    """The service's writer on `engine`, configured by the `prediction_log_*` settings."""
    flush_interval = settings.prediction_log_flush_ms / 1000.0
    return PredictionLogWriter(
        SqlPredictionSink.for_engine(engine, settings.db_statement_timeout_ms),
        settings.prediction_log_spill_path,
        flush_interval=flush_interval,
        batch_rows=settings.prediction_log_batch_rows,
        max_buffer=settings.prediction_log_max_buffer,
        write_timeout=settings.prediction_log_write_timeout_seconds,
        retry_initial=flush_interval,
        retry_max=settings.prediction_log_retry_max_seconds,
        shutdown_timeout=settings.prediction_log_shutdown_timeout_seconds,
    )
