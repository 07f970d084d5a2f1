"""The served model and its lifecycle: what is served, promoting a version (served by every
worker within a poll interval, verified here first), and the challenger."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from churn_mlops.api.deps import RuntimeDep, ServedModelDep
from churn_mlops.api.schemas.feature_schema import FeatureSchemaDocument
from churn_mlops.api.schemas.model import (
    AliasChange,
    AliasUpdate,
    ChallengerStatus,
    ModelStatus,
    RefusedStatus,
)
from churn_mlops.api.schemas.problem import Problem
from churn_mlops.api.scopes import AUTH_RESPONSES, AdminAccess, ReadAccess
from churn_mlops.core.errors import Conflict
from churn_mlops.db.stored_features import check_database_promotable
from churn_mlops.lifecycle.served import ServedModel
from churn_mlops.lifecycle.watcher import ModelWatcher
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.runtime import Runtime

Followed = Literal["champion", "challenger"]
NOT_LOADED: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem, "description": "The model is not loaded yet"}
}


def _watcher(runtime: Runtime) -> ModelWatcher:
    if runtime.watcher is None:
        raise Conflict(
            "this service serves a fixed model directory (--model-dir or CHURN_MODEL_DIR) and "
            "follows no registry alias; serve without it to follow the registry"
        )
    return runtime.watcher


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
        404: {"model": Problem, "description": "Unknown version (or no challenger to remove)"},
        409: {"model": Problem, "description": "The service follows no registry"},
        422: {"model": Problem, "description": "The version failed to load or its parity check"},
    }
    promotions = {
        **problems,
        409: {
            "model": Problem,
            "description": "The service follows no registry, or stored customers lack features "
            "the version reads and its schema has no default for",
        },
    }

    @router.get("/model", summary="The served model", responses={**AUTH_RESPONSES, **NOT_LOADED})
    async def model(caller: ReadAccess, runtime: RuntimeDep, served: ServedModelDep) -> ModelStatus:
        """Version, features, decision threshold, hold-out metrics and provenance; where the
        model comes from, the challenger scored beside it, and versions this worker refused."""
        return _model_status(runtime, served)

    @router.get(
        "/model/schema",
        summary="The served model's feature schema",
        response_model=FeatureSchemaDocument,
        responses={**AUTH_RESPONSES, **NOT_LOADED},
    )
    async def model_schema(caller: ReadAccess, served: ServedModelDep) -> Response:
        """The features the served model reads, as its artifact stores them: each one's kind,
        allowed values or bounds, nullability and unseen-category rule; the example customer;
        the schema's sha256. `/predict` validates requests by it."""
        schema = served.pipeline.schema
        document = {**schema.to_dict(), "sha256": schema.sha256}
        return Response(orjson.dumps(document), media_type="application/json")

    async def promote(runtime: Runtime, alias: Followed, version: str) -> AliasChange:
        watcher = _watcher(runtime)
        before = (await asyncio.to_thread(watcher.registry.aliases)).get(alias)
        database = runtime.database

        async def fits_stored_customers(artifact: ModelArtifact) -> None:
            # 409 naming the features stored customers lack and the schema has no default for.
            if database is not None:
                await check_database_promotable(database, artifact.schema, version)

        await watcher.promote(version, alias, fits_stored_customers)
        return AliasChange(alias=alias, version=version, previous=before)

    # Two routes, not `/model/{alias}`: a template would also match `/model/compare` and
    # advertise PUT there (`Allow`), and the service follows exactly these two aliases.
    @router.put("/model/champion", summary="Promote a version to champion", responses=promotions)
    async def promote_champion(
        caller: AdminAccess, runtime: RuntimeDep, update: AliasUpdate
    ) -> AliasChange:
        """Load and verify the version in this worker, then point `champion` at it in the
        registry and serve it here; every other worker follows within
        `CHURN_MODEL_POLL_SECONDS`. A version that does not load changes nothing (422)."""
        return await promote(runtime, "champion", update.version)

    @router.put("/model/challenger", summary="Make a version the challenger", responses=promotions)
    async def promote_challenger(
        caller: AdminAccess, runtime: RuntimeDep, update: AliasUpdate
    ) -> AliasChange:
        """As `PUT /model/champion`, for `challenger`: scored in shadow or answering the canary
        share (`CHURN_CHALLENGER_MODE`) in every worker within a poll."""
        return await promote(runtime, "challenger", update.version)

    @router.delete("/model/challenger", summary="Stop scoring the challenger", responses=problems)
    async def remove_challenger(caller: AdminAccess, runtime: RuntimeDep) -> AliasChange:
        """Clear the `challenger` alias: shadow scoring or the canary stops within a poll."""
        watcher = _watcher(runtime)
        previous = await watcher.remove_challenger()
        return AliasChange(alias="challenger", version=None, previous=previous)

    return router
