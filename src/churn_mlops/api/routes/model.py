"""The served model and its lifecycle: what is served, promoting a version (served by every
worker within a poll interval, verified here first), and the challenger."""

from __future__ import annotations

import asyncio
import math
from typing import Any, Literal

from fastapi import APIRouter, Path, Query

from churn_mlops.api.deps import RuntimeDep, ServedModelDep, SessionDep
from churn_mlops.api.schemas.model import (
    AliasChange,
    AliasUpdate,
    ChallengerStatus,
    ModelComparison,
    ModelStatus,
    OutcomeFigures,
    RefusedStatus,
    ShadowComparison,
    VersionComparison,
)
from churn_mlops.api.schemas.problem import Problem
from churn_mlops.api.scopes import AUTH_RESPONSES, AdminAccess, ReadAccess
from churn_mlops.core.errors import Conflict, NotFound
from churn_mlops.lifecycle.compare import VersionFigures, compare_versions
from churn_mlops.lifecycle.served import ServedModel
from churn_mlops.lifecycle.watcher import ModelWatcher
from churn_mlops.model.quality_metrics import QualityFigures
from churn_mlops.model.registry import CHALLENGER, CHAMPION, ModelRegistry, UnknownModelVersion
from churn_mlops.runtime import Runtime

FOLLOWED_ALIASES = (CHAMPION, CHALLENGER)
NOT_LOADED: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem, "description": "The model is not loaded yet"}
}


class UnknownServedAlias(NotFound):
    def __init__(self, alias: str) -> None:
        super().__init__(
            f"alias {alias!r} is not one the service follows: {', '.join(FOLLOWED_ALIASES)}"
        )


def _watcher(runtime: Runtime) -> ModelWatcher:
    if runtime.watcher is None:
        raise Conflict(
            "this service serves a fixed model directory (--model-dir or CHURN_MODEL_DIR) and "
            "follows no registry alias; serve without it to follow the registry"
        )
    return runtime.watcher


def _followed(alias: str) -> Literal["champion", "challenger"]:
    if alias == CHAMPION:
        return "champion"
    if alias == CHALLENGER:
        return "challenger"
    raise UnknownServedAlias(alias)


class NothingToCompare(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "no challenger to compare: set one (PUT /model/challenger) or name two versions "
            "(?champion=...&challenger=...)"
        )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _outcome_figures(figures: QualityFigures | None) -> OutcomeFigures | None:
    if figures is None:
        return None
    return OutcomeFigures(
        outcomes=figures.outcomes,
        churned=figures.churned,
        roc_auc=_finite(figures.roc_auc),
        pr_auc=_finite(figures.pr_auc),
        brier_score=figures.brier_score,
        calibration_error=figures.calibration_error,
    )


def _version(figures: VersionFigures) -> VersionComparison:
    return VersionComparison(
        version=figures.version,
        answered=figures.answered,
        outcomes=_outcome_figures(figures.outcomes),
    )


async def _threshold(
    version: str, served: ServedModel, registry: ModelRegistry | None
) -> float | None:
    """A version's decision threshold: the served champion's from memory, others' from the
    registry; None when it does not know the version."""
    if version == served.artifact.version:
        return served.artifact.threshold
    if registry is None:
        return None
    try:
        return (await asyncio.to_thread(registry.get, version)).info.threshold
    except UnknownModelVersion:
        return None


def build_model_router() -> APIRouter:
    router = APIRouter(tags=["model"])
    problems: dict[int | str, dict[str, Any]] = {
        **AUTH_RESPONSES,
        404: {"model": Problem, "description": "Unknown alias or version"},
        409: {"model": Problem, "description": "The service follows no registry"},
        422: {"model": Problem, "description": "The version failed to load or its parity check"},
    }

    @router.get("/model", summary="The served model", responses={**AUTH_RESPONSES, **NOT_LOADED})
    async def model(caller: ReadAccess, runtime: RuntimeDep, served: ServedModelDep) -> ModelStatus:
        """Version, features, decision threshold, hold-out metrics and provenance; where the
        model comes from, the challenger scored beside it, and versions this worker refused."""
        challenger = served.pipeline.challenger
        return ModelStatus(
            **served.artifact.info.model_dump(),
            source="registry" if runtime.watcher is not None else "directory",
            challenger=None
            if challenger is None
            else ChallengerStatus(
                version=challenger.version,
                mode=challenger.mode,
                canary_percent=None if challenger.canary is None else challenger.canary.percent,
            ),
            refused=[
                RefusedStatus.model_validate(refused, from_attributes=True)
                for refused in runtime.model.refused.values()
            ],
        )

    @router.put("/model/{alias}", summary="Point an alias at a version", responses=problems)
    async def promote(
        caller: AdminAccess,
        runtime: RuntimeDep,
        update: AliasUpdate,
        alias: str = Path(description="champion or challenger"),
    ) -> AliasChange:
        """Load and verify the version in this worker, then point the alias at it in the
        registry and serve it here; every other worker follows within
        `CHURN_MODEL_POLL_SECONDS`. A version that does not load changes nothing (422)."""
        followed = _followed(alias)
        watcher = _watcher(runtime)
        before = (await asyncio.to_thread(watcher.registry.aliases)).get(followed)
        await watcher.promote(update.version, followed)
        return AliasChange(alias=followed, version=update.version, previous=before)

    @router.delete("/model/challenger", summary="Stop scoring the challenger", responses=problems)
    async def remove_challenger(caller: AdminAccess, runtime: RuntimeDep) -> AliasChange:
        """Clear the `challenger` alias: shadow scoring or the canary stops within a poll."""
        watcher = _watcher(runtime)
        previous = await watcher.remove_challenger()
        return AliasChange(alias="challenger", version=None, previous=previous)

    @router.get(
        "/model/compare",
        summary="Compare the challenger with the champion",
        responses={**AUTH_RESPONSES, 409: problems[409], 503: NOT_LOADED[503]},
    )
    async def compare(
        caller: ReadAccess,
        runtime: RuntimeDep,
        served: ServedModelDep,
        session: SessionDep,
        champion: str | None = Query(None, description="Default: the served champion."),
        challenger: str | None = Query(None, description="Default: the served challenger."),
    ) -> ModelComparison:
        """On the rows both versions scored in shadow mode: how many, how often they decide
        alike, mean and p99 of |Δp|; on outcomes observed in `CHURN_QUALITY_WINDOW_DAYS`:
        ROC AUC, PR AUC, Brier score and calibration error of each, on the same customers."""
        served_challenger = served.pipeline.challenger
        champion = champion or served.artifact.version
        challenger = challenger or (served_challenger.version if served_challenger else None)
        if challenger is None:
            raise NothingToCompare()
        registry = runtime.watcher.registry if runtime.watcher is not None else None
        window = runtime.settings.quality_window_days
        comparison = await compare_versions(
            session,
            champion,
            challenger,
            window_days=window,
            challenger_threshold=await _threshold(challenger, served, registry),
        )
        return ModelComparison(
            since=comparison.since.isoformat(timespec="seconds"),
            window_days=window,
            champion=_version(comparison.champion),
            challenger=_version(comparison.challenger),
            shadow=ShadowComparison(**vars(comparison.shadow)),
            common_outcomes=comparison.common_outcomes,
        )

    return router
