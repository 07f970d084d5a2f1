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

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level of the service's own loggers."""
