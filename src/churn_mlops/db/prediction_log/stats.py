"""The counters a prediction-log writer keeps, as the metrics read them."""

from __future__ import annotations

from dataclasses import dataclass


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
