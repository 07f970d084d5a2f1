"""What live drift monitoring costs a serving worker (issue 18: at most 1 us per row).

    flock /tmp/churn-bench.lock .venv/bin/python -m benchmarks.drift_cost MODEL_DIR

Prints three tables:

- **Request path**: the time per model call that the drift wrapper adds to a score function
  (`DriftMonitor.observing` around a stub that returns precomputed probabilities, so only the
  wrapper is timed), per call and per row, for batches of 1, 32 and 1,000 rows; the deque's
  folds when it fills are included.
- **Refresh**: the fold of the pending calls into the window (one compiled pass) per row, for
  the same batch sizes: work done once a refresh, on the event loop but off the request.
- **Whole app**: CPU microseconds per raw-ASGI `POST /predict` of the app with drift on and
  off (metrics on in both, cache, database and authentication off), in interleaved blocks,
  background refreshes included.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.constants import DISTINCT_CUSTOMERS
from benchmarks.inprocess import cpu_table, cycle, interleaved_blocks, predict_variant, serving_all
from benchmarks.load import prediction_bodies
from churn_mlops.api.app import create_app
from churn_mlops.data import load_telco_csv
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.observability.drift import MAX_PENDING_CALLS, DriftMonitor, DriftWindow
from churn_mlops.settings import Settings

BATCH_SIZES = (1, 32, 1_000)
ROWS_PER_SIZE = 400_000
ON, OFF = "drift on", "drift off"


def request_path_table(artifact: ModelArtifact) -> list[str]:
    profile = artifact.drift_profile
    if profile is None:
        raise SystemExit(f"model {artifact.version} has no drift profile: retrain it")
    rows = artifact.encoder.encode_columns(load_telco_csv().columns)
    lines = [
        "| rows per call | wrapper us per call | wrapper ns per row | fold ns per row "
        "| total ns per row |",
        "|---:|---:|---:|---:|---:|",
    ]
    for size in BATCH_SIZES:
        batch = np.ascontiguousarray(rows[:size])
        answer = np.full(size, 0.3)

        def stub(_: np.ndarray, answer: np.ndarray = answer) -> np.ndarray:
            return answer

        # Fewer calls than fill the deque: its folds are the refresh column's.
        calls = min(max(ROWS_PER_SIZE // size, 2_000), MAX_PENDING_CALLS - 1)
        bare = _per_call(stub, batch, calls, lambda: None)
        monitor = DriftMonitor(3600.0)
        wrapped = monitor.observing(artifact.version, profile, stub)
        with_drift = _per_call(wrapped, batch, calls, monitor.refresh)
        added = max(with_drift - bare, 0.0)
        fold = _fold_ns_per_row(DriftWindow(profile, 3600.0), batch, answer, calls)
        lines.append(
            f"| {size:,} | {added * 1e6:.3f} | {added * 1e9 / size:.1f} | {fold:.1f} "
            f"| {added * 1e9 / size + fold:.1f} |"
        )
    return lines


def _per_call(
    score: Callable[[np.ndarray], np.ndarray],
    batch: np.ndarray,
    calls: int,
    between: Callable[[], None],
) -> float:
    """Median seconds per call over 9 runs of `calls` calls, `between` untimed after each."""
    figures = []
    for _ in range(9):
        began = time.perf_counter()
        for _ in range(calls):
            score(batch)
        figures.append((time.perf_counter() - began) / calls)
        between()
    return statistics.median(figures)


def _fold_ns_per_row(
    window: DriftWindow, batch: np.ndarray, answer: np.ndarray, calls: int
) -> float:
    """A refresh's fold of `calls` pending calls (as many as a second at that rate leaves)."""
    per_fold = min(calls, 4_000)
    figures = []
    for _ in range(5):
        for _ in range(per_fold):
            window._pending.append((batch, answer))
        began = time.perf_counter()
        window.fold()
        figures.append((time.perf_counter() - began) / (per_fold * len(batch)))
    return statistics.median(figures) * 1e9


def whole_app_table(
    model_dir: Path, artifact: ModelArtifact, blocks: int, requests: int
) -> list[str]:
    bodies = prediction_bodies(load_telco_csv(), DISTINCT_CUSTOMERS)
    base = Settings(
        model_dir=model_dir,
        cache_enabled=False,
        database_url="",
        auth_enabled=False,
        environment="test",
        slow_request_ms=60_000,
    )
    apps = {
        name: create_app(base.model_copy(update={"drift_enabled": on}), artifact)
        for name, on in ((ON, True), (OFF, False))
    }

    async def drive() -> dict[str, list[float]]:
        async with serving_all(apps) as running:
            variants = [predict_variant(name, app) for name, app in running.items()]
            return await interleaved_blocks(
                variants, cycle(bodies, requests), blocks, warmup=bodies[:500]
            )

    return cpu_table(asyncio.run(drive()), ON, OFF)


def main(argv: list[str]) -> None:
    model_dir = Path(argv[0])
    artifact = ModelArtifact.load(model_dir)
    print("Request path and refresh (per model call through the drift wrapper):")
    print("\n".join(request_path_table(artifact)))
    if "--no-app" not in argv:
        print("\nWhole app, POST /predict, CPU per request:")
        print("\n".join(whole_app_table(model_dir, artifact, blocks=10, requests=2_000)))


if __name__ == "__main__":
    main(sys.argv[1:])
