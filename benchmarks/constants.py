"""The figures every suite shares, defined once: how servers run, how wrk loads them, where
results go."""

from __future__ import annotations

from pathlib import Path

COMMAND = "python -m benchmarks"
"""How a report names the command that repeats it."""
RESULTS_ROOT = Path("bench-results")
"""Each run writes to a timestamped folder under it unless given `--out`."""

HOST = "127.0.0.1"
WORKERS = 2
"""uvicorn workers per server: one per core of the 2-core machine the figures come from."""
WRK_THREADS = 2
"""One wrk thread per core; wrk needs far less CPU than the servers it loads."""
DISTINCT_CUSTOMERS = 2_000
"""Customers cycled through by `/predict` runs: more than any cache warm-up sees in a short run,
so that a cache (when one is on) is measured at a realistic hit rate."""
BATCH_BODIES = 4
"""Different `/predict/batch` bodies per batch size."""
REQUEST_TIMEOUT_S = 5
"""wrk's per-request timeout for single predictions and GETs: slower answers are timeouts."""

DEFAULT_DURATION = "10s"
DEFAULT_WARMUP = "2s"
DEFAULT_PRICE_PER_CORE_HOUR = 0.04
"""USD per core-hour, for the cost per million requests."""

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DB_URL = "postgresql://postgres@127.0.0.1:5432/churn_bench"
KEY_PREFIX_STEM = "churn-bench-"
"""The bench's Redis keys live under `churn-bench-<random>:`, never a service's prefix."""
WORK_DIR_PREFIX = "churn-bench-"
"""Temporary folders of a run (bodies, wrk scripts, the bench's credentials database)."""
