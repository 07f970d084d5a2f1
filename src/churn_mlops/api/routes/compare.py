"""`GET /model/compare`: the challenger against the champion, on the rows both scored and on
the outcomes both scored the customer before (figures from `lifecycle/compare.py`)."""

from __future__ import annotations

import asyncio
import math

from fastapi import APIRouter, Query

from churn_mlops.api.deps import RuntimeDep, ServedModelDep, SessionDep
from churn_mlops.api.routes.model import NOT_LOADED
from churn_mlops.api.schemas.model import (
    ModelComparison,
    OutcomeFigures,
    ShadowComparison,
    VersionComparison,
)
from churn_mlops.api.schemas.problem import Problem
from churn_mlops.api.scopes import AUTH_RESPONSES, ReadAccess
from churn_mlops.core.errors import Conflict
from churn_mlops.lifecycle.compare import VersionFigures, compare_versions
from churn_mlops.lifecycle.served import ServedModel
from churn_mlops.model.quality_metrics import QualityFigures
from churn_mlops.model.registry import ModelRegistry, UnknownModelVersion


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


def build_compare_router() -> APIRouter:
    router = APIRouter(tags=["model"])

    @router.get(
        "/model/compare",
        summary="Compare the challenger with the champion",
        responses={
            **AUTH_RESPONSES,
            409: {"model": Problem, "description": "No challenger to compare"},
            **NOT_LOADED,
        },
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
