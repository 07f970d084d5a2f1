"""The one settings object of the service, read from `CHURN_*` variables and `.env`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_workers() -> int:
    return os.cpu_count() or 1


class Settings(BaseSettings):
    """Every knob of churn-mlops; each field documents itself (see the README table)."""

    model_config = SettingsConfigDict(
        env_prefix="CHURN_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        use_attribute_docstrings=True,
        frozen=True,
    )

    environment: Literal["development", "production", "test"] = "development"
    """Deployment mode: development, test or production."""

    host: str = "127.0.0.1"
    """Interface `churn-mlops serve` binds to."""

    port: int = Field(default=8000, ge=0, le=65535)
    """TCP port `churn-mlops serve` listens on."""

    workers: int = Field(default_factory=_default_workers, ge=1)
    """Server processes; defaults to the number of CPU cores."""

    model_dir: Path = Path("var/model")
    """Model artifact directory that is served; `serve` trains one here if it is missing."""

    data_path: Path | None = None
    """Training CSV in the Telco layout; empty means the dataset shipped in the package."""

    max_batch_rows: int = Field(default=10_000, ge=1)
    """Largest number of rows `/predict/batch` accepts; more is a 413."""

    slow_request_ms: float = Field(default=1000.0, gt=0)
    """Requests slower than this many milliseconds are logged as warnings."""

    gzip_min_bytes: int = Field(default=1000, ge=0)
    """Responses at least this large are gzip-compressed when the client accepts it."""

    model_threads: int = Field(default=1, ge=1)
    """OpenMP/BLAS threads per process for inference; 1 avoids oversubscribing the cores."""

    fast_predict_enabled: bool = True
    """Answer `POST /predict` with a raw ASGI endpoint ahead of FastAPI's routing; off routes it
    through FastAPI like every other path (same contract, slower)."""

    batcher_enabled: bool = True
    """Gather concurrent `/predict` requests into one model call; off answers each alone."""

    batch_max_size: int = Field(default=32, ge=1)
    """Most requests the micro-batcher puts in one model call."""

    batch_max_wait_ms: float = Field(default=0.0, ge=0)
    """How long the first request of a batch may wait for others; 0 gathers what arrived in
    the same event-loop turn, with no timer."""

    batch_max_queue: int = Field(default=256, ge=1)
    """Requests that may wait for the model per worker; past it `/predict` answers 503 with
    Retry-After at once instead of letting latency grow."""

    batch_max_queue_delay_ms: float = Field(default=50.0, gt=0)
    """Past this wait of the oldest queued request beyond `batch_max_wait_ms` (an event-loop turn
    this long means the worker is saturated), `/predict` answers 503 with Retry-After at once."""

    offload_min_rows: int = Field(default=50_000, ge=1)
    """Model calls with at least this many rows run in a worker thread, off the event loop;
    smaller ones run inline. The thread hop costs more than the model itself up to 10,000 rows
    (docs/performance.md), so by default only batches past the default row limit would move."""

    graceful_shutdown_seconds: float = Field(default=20.0, gt=0)
    """On SIGTERM, how long open requests may take to finish before the server stops."""

    cache_enabled: bool = True
    """Serve repeated rows from the prediction cache (L1 in-process, L2 in Redis if set)."""

    cache_l1_size: int = Field(default=100_000, ge=0)
    """Predictions each worker keeps in memory (least recently used go first)."""

    cache_l1_ttl_seconds: float = Field(default=300.0, gt=0)
    """How long a prediction stays in a worker's memory; also bounds how long other workers
    may still serve an entry after `DELETE /cache` ran in one of them."""

    redis_url: str | None = None
    """Redis for the shared L2 cache (e.g. redis://127.0.0.1:6379/0); empty means L1 only."""

    cache_l2_ttl_seconds: float = Field(default=3600.0, gt=0)
    """How long a prediction stays in Redis."""

    cache_redis_timeout_ms: float = Field(default=5.0, gt=0)
    """Budget of one Redis read; a slow or hanging Redis costs a prediction at most this (writes
    get four times as much and never delay a response)."""

    cache_key_prefix: str = Field(default="churn:pred", min_length=1)
    """Namespace of the cache's keys in Redis; the model version follows it in every key."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level of the service's own loggers."""

    # --- Persistence: database, pool, prediction log (issue 5) ---

    database_url: str = "sqlite:///var/churn.db"
    """Customers and prediction history: `postgresql://user:pass@host:5432/db` (served through
    asyncpg) or `sqlite:///path` (aiosqlite; a relative path is from the working directory)."""

    db_pool_size: int = Field(default=20, ge=1)
    """PostgreSQL connections each worker keeps open."""

    db_max_overflow: int = Field(default=10, ge=0)
    """Extra PostgreSQL connections a worker may open past the pool under a burst."""

    db_pool_pre_ping: bool = True
    """Test a pooled connection before use, so one the server dropped is replaced, not failed."""

    db_pool_recycle_seconds: int = Field(default=3600, ge=1)
    """Replace pooled connections older than this (idle-timeouts of proxies and servers)."""

    db_statement_timeout_ms: int = Field(default=5000, ge=1)
    """PostgreSQL cancels any statement of the service running longer than this."""

    # --- Security: authentication, API keys, rate limits (issue 6) ---

    # --- Observability: metrics, logs, profiling (issue 7) ---
