"""What routes receive: the only reader of the Runtime the lifespan yields as typed state.

Every dependency here is `async def`, even where nothing is awaited: FastAPI runs a plain
`def` dependency in its thread pool, a thread hop per request for a microsecond of work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, TypedDict

from fastapi import Depends, Request
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from churn_mlops.core.errors import DatabaseUnavailable, ModelNotReady
from churn_mlops.db.read_pool import UNAVAILABLE_SQLSTATES
from churn_mlops.prediction.pipeline import PredictionPipeline
from churn_mlops.runtime import Runtime, ServedModel
from churn_mlops.security.services import SecurityServices

NOT_READY = "The model is still loading; retry in a moment."


class State(TypedDict):
    """The lifespan state every request carries (Starlette copies it into `request.state`)."""

    runtime: Runtime


async def get_runtime_if_started(request: Request) -> Runtime | None:
    """The Runtime; None in an app whose lifespan has not run (a test client outside `with`)."""
    runtime: Runtime | None = getattr(request.state, "runtime", None)
    return runtime


StartedRuntimeDep = Annotated[Runtime | None, Depends(get_runtime_if_started)]


async def get_runtime(runtime: StartedRuntimeDep) -> Runtime:
    if runtime is None:
        # Only an app whose lifespan has not run (a test client outside `with`) gets here.
        raise ModelNotReady(NOT_READY)
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_served_model(runtime: RuntimeDep) -> ServedModel:
    served = runtime.model.current
    if served is None:
        raise ModelNotReady(NOT_READY)
    return served


ServedModelDep = Annotated[ServedModel, Depends(get_served_model)]


async def get_pipeline(served: ServedModelDep) -> PredictionPipeline:
    return served.pipeline


PipelineDep = Annotated[PredictionPipeline, Depends(get_pipeline)]


async def get_security(runtime: RuntimeDep) -> SecurityServices:
    return runtime.security


SecurityDep = Annotated[SecurityServices, Depends(get_security)]


# What a lost or refused connection raises: asyncpg's and aiosqlite's errors wrapped by
# SQLAlchemy, the socket's own, and the statement timeout's cancellation.
_UNAVAILABLE = (OperationalError, InterfaceError, OSError, TimeoutError)
# PostgreSQL's refusals (UNAVAILABLE_SQLSTATES) reach here as a plain DBAPIError wrapping
# asyncpg's server error. Other DBAPIErrors are bugs and stay 500s.


def _database_unavailable(error: BaseException) -> bool:
    if isinstance(error, _UNAVAILABLE):
        return True
    state = getattr(getattr(error, "orig", None), "sqlstate", None)
    return (
        isinstance(error, DBAPIError)
        and isinstance(state, str)
        and (state.startswith(UNAVAILABLE_SQLSTATES))
    )


CONNECTION_BUDGET_SECONDS = 1.0
"""Longest a request waits for a live connection (the pool, its pre-ping, a new connect): a
database that drops packets would otherwise hold it for asyncpg's connect timeout (60 s)."""
_RETRY = {"Retry-After": "1"}


UNAVAILABLE = "The database does not answer; retry in a moment."
NOT_CONFIGURED = "The database is not configured (CHURN_DATABASE_URL)."


def database_unavailable() -> DatabaseUnavailable:
    """The 503 problem of a database that does not answer, with Retry-After."""
    return DatabaseUnavailable(UNAVAILABLE, headers=_RETRY)


@asynccontextmanager
async def database_session(runtime: Runtime) -> AsyncIterator[AsyncSession]:
    """A session of the app's database, its connection checked out within
    CONNECTION_BUDGET_SECONDS; 503 problem with Retry-After when the database is unreachable."""
    if runtime.database is None:
        raise DatabaseUnavailable(NOT_CONFIGURED)
    try:
        session = await runtime.database.session_within(CONNECTION_BUDGET_SECONDS)
        async with session:
            yield session
    except Exception as error:
        if not _database_unavailable(error):
            raise
        raise database_unavailable() from error


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """`database_session` for one request."""
    async with database_session(runtime) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
