"""Following the registry: every worker serves what `champion` names and scores what
`challenger` names, within a poll interval of a promotion, without a restart.

Each worker polls the registry's aliases every `CHURN_MODEL_POLL_SECONDS` (0.5 s by default; one
small file read on the local registry, one request to MLflow's). Polling rather than a Redis
notification: it needs nothing the embedded default lacks, works the same for both registry
backends and for a promotion made by any tool, and a missed message cannot leave a worker on
an old version. When an alias names a new version the worker loads it in a thread (the
artifact's hashes and its compiled forest's parity are checked on load, about 50 ms),
builds and warms up its pipeline, then swaps the served reference in one store. Requests that
already hold the old pipeline finish on it; it is closed (its queue drained) a few seconds
later. A version that fails to load is refused: the old one keeps serving, `GET /model` and the
`churn_model_refused` gauge name it with the reason, and the log says it once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from churn_mlops.core.errors import InvalidRequest, ServiceError
from churn_mlops.core.tasks import cancel_and_wait
from churn_mlops.lifecycle.served import ModelSlot, RefusedVersion, ServedModel
from churn_mlops.model.artifact import ArtifactError, ModelArtifact
from churn_mlops.model.inference import ChurnPredictor
from churn_mlops.model.registry import CHALLENGER, CHAMPION, ModelRegistry, UnknownModelVersion
from churn_mlops.observability.metrics import ServiceMetrics
from churn_mlops.prediction.challenger import CanarySplit, Challenger, ShadowScorer
from churn_mlops.prediction.pipeline import PredictionPipeline
from churn_mlops.settings import Settings

logger = logging.getLogger("churn_mlops.lifecycle")

# How long a replaced pipeline stays open: a request that read it just before the swap may
# still wait on Redis (at most its read budget) before it queues for the model.
RETIRE_AFTER_SECONDS = 5.0


class NoChampion(ServiceError):
    def __init__(self, location: str) -> None:
        super().__init__(
            f"the model registry at {location} has no champion: run `churn-mlops train "
            "--promote` or `churn-mlops models promote VERSION`"
        )


class VersionRefused(InvalidRequest):
    """A version that cannot be served (422): it failed to load or its parity check."""

    def __init__(self, refused: RefusedVersion) -> None:
        super().__init__(
            f"model version {refused.version} cannot be served as {refused.alias} "
            f"({refused.reason}): {refused.detail}"
        )
        self.refused = refused


def _reads_same_rows(champion: ModelArtifact, challenger: ModelArtifact) -> bool:
    """Whether the challenger reads the rows decoded for the champion: the same features in
    the same order with the same category codes (a shadow or canary challenger scores them)."""
    return champion.encoder.to_dict() == challenger.encoder.to_dict()


def _other_rows(version: str, champion: str) -> RefusedVersion:
    at = datetime.now(UTC).isoformat(timespec="seconds")
    detail = (
        f"it reads other features or categories than the champion {champion} (another "
        "schema or vocabulary), and a challenger scores the rows decoded for the champion; "
        "compare such a model after promoting it, or retrain it on the champion's columns"
    )
    return RefusedVersion(CHALLENGER, version, "features", detail, at)


def _refusal(alias: str, version: str, error: Exception) -> RefusedVersion:
    detail = getattr(error, "detail", None) or str(error)
    if isinstance(error, UnknownModelVersion):
        reason = "not_registered"
    elif isinstance(error, ArtifactError) and "does not match the model" in detail:
        reason = "parity"
    elif isinstance(error, ArtifactError) and "modified" in detail:
        reason = "modified"
    else:
        reason = "unreadable"
    at = datetime.now(UTC).isoformat(timespec="seconds")
    return RefusedVersion(alias, version, reason, detail, at)


class ModelWatcher:
    """Keeps one worker's `ModelSlot` on what the registry's aliases name (module docstring)."""

    def __init__(
        self,
        registry: ModelRegistry,
        slot: ModelSlot,
        build: Callable[[ModelArtifact], PredictionPipeline],
        settings: Settings,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.registry = registry
        self.slot = slot
        self._build = build
        self._poll_seconds = settings.model_poll_seconds
        self._challenger_mode = settings.challenger_mode
        # The artifact of the challenger scored beside the champion (its rows are checked
        # against a new champion's).
        self._challenger_artifact: ModelArtifact | None = None
        self._canary_percent = settings.canary_percent
        self._metrics = metrics
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._last_error: str | None = None
        self._serving: dict[str, str] = {}

    # --- life cycle ---

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._poll(), name="model-watcher")

    async def close(self) -> None:
        """Stop polling; close replaced pipelines now, and the challenger's."""
        # A poll in progress may be loading a version from a registry that does not answer.
        await cancel_and_wait(self._task)
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        served = self.slot.current or self.slot.last
        challenger = None if served is None else served.pipeline.challenger
        if challenger is not None and challenger.pipeline is not None:
            await challenger.pipeline.close()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                await self.check()
            except Exception as error:  # the registry is unreachable: keep serving, say so once
                message = getattr(error, "detail", None) or repr(error)
                if message != self._last_error:
                    logger.warning("cannot read the model registry: %s", message)
                self._last_error = message
            else:
                self._last_error = None

    # --- following the aliases ---

    async def initial(self) -> ServedModel:
        """The champion (with its challenger) to start serving, not yet in the slot; a champion
        that does not load is an error here, since there is nothing else to serve."""
        aliases = await asyncio.to_thread(self.registry.aliases)
        version = aliases.get(CHAMPION)
        if version is None:
            raise NoChampion(self.registry.location)
        async with self._lock:
            self._serve_champion(await self._load(CHAMPION, version))
            challenger = aliases.get(CHALLENGER) if self._challenger_mode != "off" else None
            await self._follow_challenger(challenger)
            self.slot.swap(None)
        if self.slot.last is None:  # _serve_champion always puts one there
            raise NoChampion(self.registry.location)
        return self.slot.last

    async def check(self) -> None:
        """Read the aliases once and follow any that changed."""
        aliases = await asyncio.to_thread(self.registry.aliases)
        async with self._lock:
            champion = aliases.get(CHAMPION)
            if champion is not None:
                await self._follow_champion(champion)
            challenger = aliases.get(CHALLENGER) if self._challenger_mode != "off" else None
            await self._follow_challenger(challenger)

    async def promote(
        self,
        version: str,
        alias: str = CHAMPION,
        check: Callable[[ModelArtifact], Awaitable[None]] | None = None,
    ) -> None:
        """Load and verify `version` here first; only then point `alias` at it in the registry
        and serve it in this worker (the others follow within a poll). A version that does not
        load raises `VersionRefused` and changes nothing; an unknown one, a 404. `check` may
        refuse the loaded artifact (raising) before anything changes."""
        await asyncio.to_thread(self.registry.get, version)
        artifact = await self._load(alias, version)
        if check is not None:
            await check(artifact)
        async with self._lock:
            await asyncio.to_thread(self.registry.promote, version, alias)
            if alias == CHAMPION:
                self._serve_champion(artifact)
            elif alias == CHALLENGER and self._challenger_mode != "off":
                self._serve_challenger(artifact)

    async def remove_challenger(self) -> str:
        """Clear the `challenger` alias and stop scoring it here; the version it named."""
        async with self._lock:
            version = await asyncio.to_thread(self.registry.remove_alias, CHALLENGER)
            self._stop_challenger()
        return version

    async def _load(self, alias: str, version: str) -> ModelArtifact:
        def load() -> ModelArtifact:
            return ModelArtifact.load(self.registry.get(version).path)

        started = time.perf_counter()
        try:
            artifact = await asyncio.to_thread(load)
        except (ArtifactError, ServiceError) as error:
            refused = _refusal(alias, version, error)
            self._refuse(refused)
            raise VersionRefused(refused) from None
        self.slot.refused.pop(alias, None)
        logger.info(
            "loaded and verified model %s for %s in %.3f s",
            version,
            alias,
            time.perf_counter() - started,
        )
        return artifact

    def _clear_refusal(self, alias: str) -> None:
        if self.slot.refused.pop(alias, None) is not None and self._metrics is not None:
            self._metrics.clear_model_refused(alias)

    def _refuse(self, refused: RefusedVersion) -> None:
        if self.slot.refused.get(refused.alias) != refused:
            logger.error(
                "refusing model version %s as %s (%s): %s; the previous version keeps serving",
                refused.version,
                refused.alias,
                refused.reason,
                refused.detail,
            )
        self.slot.refused[refused.alias] = refused
        if self._metrics is not None:
            self._metrics.record_model_refused(refused.alias, refused.version, refused.reason)

    async def _follow_champion(self, version: str) -> None:
        served = self.slot.current
        if served is not None and served.artifact.version == version:
            self._clear_refusal(CHAMPION)  # a rollback to the served version ends a refusal
            return
        refused = self.slot.refused.get(CHAMPION)
        if refused is not None and refused.version == version:
            return  # refused already; tried again only when the alias names another version
        try:
            artifact = await self._load(CHAMPION, version)
        except VersionRefused:
            return
        self._serve_champion(artifact)

    def _serve_champion(self, artifact: ModelArtifact) -> None:
        previous = self.slot.current
        if previous is not None and previous.artifact.version == artifact.version:
            return
        pipeline = self._build(artifact)
        pipeline.warm_up()  # with its model's schema's example
        if previous is not None:
            challenger = previous.pipeline.challenger
            carried = self._challenger_artifact
            # A challenger promoted to champion stops being compared with itself, and one
            # that reads other rows than the new champion is not scored beside it.
            if (
                challenger is not None
                and challenger.version != artifact.version
                and (carried is None or _reads_same_rows(artifact, carried))
            ):
                pipeline.challenger = challenger
            elif challenger is not None:
                self._retire(challenger.pipeline)
                self._record_serving(CHALLENGER, None)
                self._challenger_artifact = None
                if challenger.version != artifact.version:
                    self._refuse(_other_rows(challenger.version, artifact.version))
        refused = self.slot.refused.get(CHALLENGER)
        if refused is not None and refused.reason == "features":
            # Judged against the champion it was refused beside: try again with this one.
            self._clear_refusal(CHALLENGER)
        self.slot.swap(ServedModel(artifact, pipeline))
        if previous is not None:
            self._retire(previous.pipeline)
        self._record_serving(CHAMPION, artifact.version)
        logger.info(
            "serving model %s (was %s)",
            artifact.version,
            None if previous is None else previous.artifact.version,
        )

    async def _follow_challenger(self, version: str | None) -> None:
        served = self.slot.current
        if served is None:
            return
        current = served.pipeline.challenger
        if version == served.artifact.version:
            version = None  # the champion itself: nothing to compare
        if (None if current is None else current.version) == version:
            self._clear_refusal(CHALLENGER)
            return
        if version is None:
            self._stop_challenger()
            return
        refused = self.slot.refused.get(CHALLENGER)
        if refused is not None and refused.version == version:
            return
        try:
            artifact = await self._load(CHALLENGER, version)
        except VersionRefused:
            return
        self._serve_challenger(artifact)

    def _serve_challenger(self, artifact: ModelArtifact) -> None:
        served = self.slot.current
        if served is None or served.artifact.version == artifact.version:
            return
        if not _reads_same_rows(served.artifact, artifact):
            self._refuse(_other_rows(artifact.version, served.artifact.version))
            return
        self._challenger_artifact = artifact
        champion = served.pipeline
        if self._challenger_mode == "canary":
            pipeline = self._build(artifact)
            pipeline.warm_up()  # with its model's schema's example
            challenger = Challenger(
                artifact.version,
                "canary",
                canary=CanarySplit(self._canary_percent),
                pipeline=pipeline,
            )
        elif champion.recorder is not None:
            scorer = ShadowScorer(
                ChurnPredictor(artifact).probabilities,
                artifact.version,
                champion.recorder,
                log_features=champion.log_features,
            )
            challenger = Challenger(artifact.version, "shadow", shadow=scorer)
        else:
            logger.warning(
                "challenger %s not scored: shadow mode records into the prediction log, "
                "which is off",
                artifact.version,
            )
            return
        previous, champion.challenger = champion.challenger, challenger
        if previous is not None:
            self._retire(previous.pipeline)
        self._record_serving(CHALLENGER, artifact.version)
        logger.info("challenger %s in %s mode", artifact.version, challenger.mode)

    def _stop_challenger(self) -> None:
        served = self.slot.current
        if served is None or served.pipeline.challenger is None:
            return
        previous, served.pipeline.challenger = served.pipeline.challenger, None
        self._challenger_artifact = None
        self._retire(previous.pipeline)
        self._record_serving(CHALLENGER, None)
        logger.info("challenger %s no longer scored", previous.version)

    def _record_serving(self, alias: str, version: str | None) -> None:
        before = self._serving.pop(alias, None)
        if version is not None:
            self._serving[alias] = version
        if self._metrics is not None:
            self._metrics.record_model_serving(alias, before, version)

    def _retire(self, pipeline: PredictionPipeline | None) -> None:
        """Close `pipeline` once requests that already hold it are done with it."""
        if pipeline is None:
            return

        async def close_later() -> None:
            try:
                await asyncio.sleep(RETIRE_AFTER_SECONDS)
            finally:
                await pipeline.close()

        task = asyncio.create_task(close_later(), name="retire-pipeline")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
