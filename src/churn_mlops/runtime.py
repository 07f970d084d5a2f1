"""The composition root: every component of a serving process, built, started and stopped in
one place and one order.

`open_runtime(settings)` is the only code that builds the model, the micro-batcher, the
prediction cache, the database, the prediction log, the security services and the metrics.
The app's lifespan enters it and yields the `Runtime` as typed state; `api.deps` hands routes
the parts they need. Nothing else reads a global that start-up filled in.

Start order: the database first (a schema that is not current stops the worker before the
model loads), then the prediction log on it, the model and its pipeline (warmed up), metrics,
security (which needs the database's sessions) and last the log's replay of an earlier run's
spill file. Stop order is the reverse, so that the pipeline's drain answers and records the
queued predictions before the log's final write, and that write happens before the database
goes.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from threadpoolctl import threadpool_limits

from churn_mlops.cache import CacheStats
from churn_mlops.db.engine import Database
from churn_mlops.db.prediction_log import (
    PredictionLogStats,
    PredictionLogWriter,
    build_prediction_log,
)
from churn_mlops.db.schema import open_database
from churn_mlops.lifecycle.served import ModelSlot, ServedModel, build_pipeline
from churn_mlops.lifecycle.watcher import ModelWatcher
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.registry import CHAMPION, open_registry
from churn_mlops.observability.drift import DriftMonitor
from churn_mlops.observability.metrics import ServiceMetrics, multiprocess_dir
from churn_mlops.observability.quality import QualityMonitor
from churn_mlops.prediction.batcher import MicroBatcher
from churn_mlops.prediction.pipeline import PredictionPipeline
from churn_mlops.security.authenticator import KeySource
from churn_mlops.security.services import SecurityServices
from churn_mlops.settings import Settings

logger = logging.getLogger("churn_mlops.runtime")

__all__ = ["ModelSlot", "Runtime", "ServedModel", "build_pipeline", "open_runtime"]


@dataclass
class Runtime:
    """Everything one serving process runs, as `open_runtime` started it."""

    settings: Settings
    model: ModelSlot
    security: SecurityServices
    metrics: ServiceMetrics | None
    """None when `CHURN_METRICS_ENABLED` is off."""
    database: Database | None
    """None when `CHURN_DATABASE_URL` is empty."""
    prediction_log: PredictionLogWriter | None
    """None without a database or with `CHURN_PREDICTION_LOG_ENABLED` off."""
    watcher: ModelWatcher | None = None
    """Follows the registry's aliases; None when serving a fixed artifact directory."""
    quality: QualityMonitor | None = None
    """Live model quality from recorded outcomes; None without a database or metrics."""

    @property
    def pipeline(self) -> PredictionPipeline | None:
        served = self.model.current
        return None if served is None else served.pipeline


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    artifact: ModelArtifact | None = None,
    *,
    key_source: KeySource | None = None,
) -> AsyncIterator[Runtime]:
    """Build and start every component; stop them all, in reverse, on exit.

    `artifact` defaults to the one in `settings.model_dir`; `key_source` verifies API keys
    instead of the database (tests, and an app without a database)."""
    # sklearn's OpenMP pool makes small predictions many times slower and several workers
    # on few cores oversubscribe them (scikit-learn issue #30662).
    threadpool_limits(limits=settings.model_threads)
    security = SecurityServices.from_settings(settings)
    if key_source is not None:
        security.use_keys(key_source)
    async with AsyncExitStack() as stack:
        metrics = ServiceMetrics(multiprocess_dir()) if settings.metrics_enabled else None
        if metrics is not None:
            stack.push_async_callback(metrics.close)
            if settings.drift_enabled:
                metrics.watch_drift(
                    DriftMonitor(settings.drift_window_seconds, metrics.multiproc_dir)
                )
        database = await open_database(settings)
        if database is not None:
            stack.push_async_callback(database.dispose)
        prediction_log = None
        if settings.prediction_log_enabled and database is not None:
            prediction_log = build_prediction_log(settings, database.engine)
            stack.push_async_callback(prediction_log.close)
        follows_registry = artifact is None and "model_dir" not in settings.model_fields_set
        slot = ModelSlot("registry" if follows_registry else "directory")
        runtime = Runtime(settings, slot, security, metrics, database, prediction_log)
        if metrics is not None:
            watch_components(metrics, runtime)

        def build(loaded: ModelArtifact) -> PredictionPipeline:
            return build_pipeline(loaded, settings, metrics, prediction_log)

        # Closed after security stops and before the log's final write: the drain answers
        # (and records) what is queued.
        stack.push_async_callback(_close_last_served, slot)
        if follows_registry:
            runtime.watcher = ModelWatcher(open_registry(settings), slot, build, settings, metrics)
            stack.push_async_callback(runtime.watcher.close)
            served = await runtime.watcher.initial()
        else:
            loaded = artifact or ModelArtifact.load(settings.model_dir)
            served = ServedModel(loaded, build(loaded))
            served.pipeline.warm_up()  # with the model's schema's example
            slot.last = served
            if metrics is not None:
                metrics.record_model_serving(CHAMPION, None, loaded.version)
        # Everything allocated so far lives as long as the process: keep it out of the garbage
        # collector's full passes, which would otherwise rescan it while requests wait.
        gc.freeze()
        if metrics is not None:
            metrics.start(settings.metrics_refresh_seconds)
        security.start(database.sessions if database is not None else None)
        stack.push_async_callback(security.stop)
        if prediction_log is not None:
            # Replays what an earlier run spilled; a database that is down only delays that.
            await prediction_log.start()
        if database is not None and metrics is not None:
            runtime.quality = QualityMonitor.from_settings(database, metrics, settings)
            stack.push_async_callback(runtime.quality.close)
            await runtime.quality.start()
        slot.swap(served)
        # First to run at exit: requests arriving while the rest stops get a clear 503.
        stack.callback(slot.swap, None)
        if runtime.watcher is not None:
            runtime.watcher.start()
            logger.info("serving the registry's champion %s", served.artifact.version)
        else:
            logger.info("serving model %s from %s", served.artifact.version, settings.model_dir)
        yield runtime


async def _close_last_served(slot: ModelSlot) -> None:
    if slot.last is not None:
        await slot.last.pipeline.close()


def watch_components(metrics: ServiceMetrics, runtime: Runtime) -> None:
    """Point the metrics at the state the components keep, read through the runtime at each
    refresh (a model swapped in later is picked up; a component that is off reads 0)."""

    def cache_stats() -> CacheStats | None:
        pipeline = runtime.pipeline
        return None if pipeline is None or pipeline.cache is None else pipeline.cache.stats()

    def batcher_stat(read: Callable[[MicroBatcher], int]) -> Callable[[], int | None]:
        def value() -> int | None:
            pipeline = runtime.pipeline
            return None if pipeline is None or pipeline.batcher is None else read(pipeline.batcher)

        return value

    def pool_in_use() -> int | None:
        database = runtime.database
        return None if database is None else database.connections_in_use()

    def prediction_log_stats() -> PredictionLogStats | None:
        writer = runtime.prediction_log
        return None if writer is None else writer.stats()

    metrics.watch_cache(cache_stats)
    metrics.watch_batcher(
        shed=batcher_stat(lambda b: b.stats.shed), queued=batcher_stat(lambda b: b.queued)
    )
    metrics.watch_db_pool(pool_in_use)
    metrics.watch_prediction_log(prediction_log_stats)
