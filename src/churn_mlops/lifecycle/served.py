"""The served model: the one reference requests read it through, and how a version becomes a
pipeline that can serve it."""

from __future__ import annotations

from dataclasses import dataclass

from churn_mlops.cache import PredictionCache
from churn_mlops.core.protocols import PredictionRecorder
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.inference import ChurnPredictor
from churn_mlops.observability.metrics import ServiceMetrics
from churn_mlops.prediction.batcher import MicroBatcher, ModelRunner
from churn_mlops.prediction.decoding import RequestDecoder
from churn_mlops.prediction.pipeline import PredictionPipeline
from churn_mlops.prediction.strict_parser import StrictBodyParser
from churn_mlops.settings import Settings


@dataclass(frozen=True)
class ServedModel:
    """A model and the pipeline that serves it: swapped together or not at all."""

    artifact: ModelArtifact
    pipeline: PredictionPipeline


@dataclass(frozen=True)
class RefusedVersion:
    """A version an alias named that this worker would not serve, and why."""

    alias: str
    version: str
    reason: str
    """A category: not_registered, unreadable, modified, parity, or features (a challenger
    that reads other rows than the champion)."""
    detail: str
    at: str
    """When it was refused (ISO 8601, UTC)."""


class ModelSlot:
    """The one reference every request reads the served model through.

    Replacing `current` is a single attribute store, atomic under the event loop: a request
    that read the old `ServedModel` finishes on it, the next one gets the new one.
    """

    def __init__(self, source: str = "directory") -> None:
        self.current: ServedModel | None = None
        self.last: ServedModel | None = None
        """The last model served: still the one to close after `swap(None)` at shutdown."""
        self.source = source
        """`registry` when the worker follows the registry's aliases, else `directory`."""
        self.refused: dict[str, RefusedVersion] = {}
        """By alias: the version it names that this worker refused (cleared once it serves
        what the alias names)."""

    def swap(self, served: ServedModel | None) -> ServedModel | None:
        """Serve `served` from now on (None: nothing, while stopping); the one it replaces."""
        previous, self.current = self.current, served
        if served is not None:
            self.last = served
        return previous


def build_pipeline(
    artifact: ModelArtifact,
    settings: Settings,
    metrics: ServiceMetrics | None = None,
    recorder: PredictionRecorder | None = None,
) -> PredictionPipeline:
    """The prediction pipeline of `artifact` as `settings` configure it: decoder, model runner,
    micro-batcher and prediction cache, each optional part on or off. The decoder and the
    strict parser are built from the artifact's feature schema: a model of other features gets
    its own."""
    predictor = ChurnPredictor(artifact)
    parser = StrictBodyParser(settings.max_batch_rows, settings.max_json_depth, artifact.schema)
    decoder = RequestDecoder(predictor.encoder, parser)
    score = (
        predictor.probabilities if metrics is None else metrics.model.timed(predictor.probabilities)
    )
    if metrics is not None and metrics.drift is not None:
        score = metrics.drift.observing(artifact.version, artifact.drift_profile, score)
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
        # The model version is part of every key: a swapped-in version never reads another
        # version's answers, in this worker's memory or in Redis.
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
            secret=settings.cache_secret.get_secret_value().encode(),
        )
    return PredictionPipeline(
        predictor,
        decoder,
        runner,
        batcher,
        cache,
        recorder,
        log_features=settings.log_features,
        explain_top_k=settings.explain_top_k,
    )
