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

import orjson
from threadpoolctl import threadpool_limits

from churn_mlops.cache import CacheStats, PredictionCache
from churn_mlops.core.features import EXAMPLE_FEATURES
from churn_mlops.db.engine import Database
from churn_mlops.db.prediction_log import (
    PredictionLogStats,
    PredictionLogWriter,
    PredictionRecorder,
    build_prediction_log,
)
from churn_mlops.db.schema import open_database
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.inference import ChurnPredictor
from churn_mlops.observability.metrics import ServiceMetrics, multiprocess_dir
from churn_mlops.prediction.batcher import MicroBatcher, ModelRunner
from churn_mlops.prediction.decoding import RequestDecoder
from churn_mlops.prediction.pipeline import PredictionPipeline
from churn_mlops.prediction.strict_parser import StrictBodyParser
from churn_mlops.security.authenticator import KeySource
from churn_mlops.security.services import SecurityServices
from churn_mlops.settings import Settings

logger = logging.getLogger("churn_mlops.runtime")


@dataclass(frozen=True)
class ServedModel:
    """A model and the pipeline that serves it: swapped together or not at all."""

    artifact: ModelArtifact
    pipeline: PredictionPipeline


class ModelSlot:
    """The one reference every request reads the served model through.

    Replacing `current` is a single attribute store, atomic under the event loop: a request
    that read the old `ServedModel` finishes on it, the next one gets the new one.
    """

    def __init__(self) -> None:
        self.current: ServedModel | None = None

    def swap(self, served: ServedModel | None) -> ServedModel | None:
        """Serve `served` from now on (None: nothing, while stopping); the one it replaces."""
        previous, self.current = self.current, served
        return previous


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

    @property
    def pipeline(self) -> PredictionPipeline | None:
        served = self.model.current
        return None if served is None else served.pipeline


def build_pipeline(
    artifact: ModelArtifact,
    settings: Settings,
    metrics: ServiceMetrics | None = None,
    recorder: PredictionRecorder | None = None,
) -> PredictionPipeline:
    """The prediction pipeline of `artifact` as `settings` configure it: decoder, model runner,
    micro-batcher and prediction cache, each optional part on or off."""
    predictor = ChurnPredictor(artifact)
    parser = StrictBodyParser(settings.max_batch_rows, settings.max_json_depth)
    decoder = RequestDecoder(predictor.encoder, parser)
    score = (
        predictor.probabilities if metrics is None else metrics.model.timed(predictor.probabilities)
    )
    runner = ModelRunner(score, offload_min_rows=settings.offload_min_rows)
    batcher = None
    if settings.batcher_enabled:
        batcher = MicroBatcher(
            runner,
            max_batch_size=settings.batch_max_size,
            max_wait=settings.batch_max_wait_ms / 1000.0,
            max_queue=settings.batch_max_queue,
            max_queue_delay=settings.batch_max_queue_delay_ms / 1000.0,
            observe_queue_wait=metrics.model.queue_wait.observe if metrics else None,
        )
    cache = None
    if settings.cache_enabled:
        read_timeout = settings.cache_redis_timeout_ms / 1000.0
        cache = PredictionCache(
            predictor.version,
            key_prefix=settings.cache_key_prefix,
            l1_size=settings.cache_l1_size,
            l1_ttl_seconds=settings.cache_l1_ttl_seconds,
            l2_url=settings.redis_url or None,
            l2_ttl_seconds=settings.cache_l2_ttl_seconds,
            l2_read_timeout=read_timeout,
            l2_write_timeout=4 * read_timeout,
            l2_read_policy=settings.cache_l2_read_policy,
        )
    return PredictionPipeline(predictor, decoder, runner, batcher, cache, recorder)


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
        database = await open_database(settings)
        if database is not None:
            stack.push_async_callback(database.dispose)
        prediction_log = None
        if settings.prediction_log_enabled and database is not None:
            prediction_log = build_prediction_log(settings, database.engine)
            stack.push_async_callback(prediction_log.close)
        runtime = Runtime(settings, ModelSlot(), security, metrics, database, prediction_log)
        if metrics is not None:
            watch_components(metrics, runtime)
        loaded = artifact or ModelArtifact.load(settings.model_dir)
        pipeline = build_pipeline(loaded, settings, metrics, prediction_log)
        # Closed after security stops and before the log's final write: the drain answers
        # (and records) what is queued.
        stack.push_async_callback(pipeline.close)
        pipeline.warm_up(orjson.dumps({"features": EXAMPLE_FEATURES}))
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
        runtime.model.swap(ServedModel(loaded, pipeline))
        # First to run at exit: requests arriving while the rest stops get a clear 503.
        stack.callback(runtime.model.swap, None)
        logger.info("serving model %s from %s", loaded.version, settings.model_dir)
        yield runtime


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
        # SQLite's pools (StaticPool, NullPool) count nothing.
        checkedout = None if database is None else getattr(database.engine.pool, "checkedout", None)
        return None if checkedout is None else int(checkedout())

    def prediction_log_stats() -> PredictionLogStats | None:
        writer = runtime.prediction_log
        return None if writer is None else writer.stats()

    metrics.watch_cache(cache_stats)
    metrics.watch_batcher(
        shed=batcher_stat(lambda b: b.stats.shed), queued=batcher_stat(lambda b: b.queued)
    )
    metrics.watch_db_pool(pool_in_use)
    metrics.watch_prediction_log(prediction_log_stats)
