"""The served model and its lifecycle: what is served, promoting a version (served by every
worker within a poll interval, verified here first), and the challenger."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Path

from churn_mlops.api.deps import RuntimeDep, ServedModelDep
from churn_mlops.api.schemas.model import (
    AliasChange,
    AliasUpdate,
    ChallengerStatus,
    ModelStatus,
    RefusedStatus,
)
from churn_mlops.api.schemas.problem import Problem
from churn_mlops.api.scopes import AUTH_RESPONSES, AdminAccess, ReadAccess
from churn_mlops.core.errors import Conflict, NotFound
from churn_mlops.lifecycle.served import ServedModel
from churn_mlops.lifecycle.watcher import ModelWatcher
from churn_mlops.model.registry import CHALLENGER, CHAMPION
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


def _model_status(runtime: Runtime, served: ServedModel) -> ModelStatus:
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
        return _model_status(runtime, served)

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

    return router
