"""What routes receive from the app state that the lifespan filled in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from churn_mlops.core.errors import DatabaseUnavailable, ModelNotReady
from churn_mlops.db.engine import Database
from churn_mlops.prediction.pipeline import PredictionPipeline


def get_pipeline(request: Request) -> PredictionPipeline:
    pipeline: PredictionPipeline | None = request.app.state.pipeline
    if pipeline is None:
        raise ModelNotReady("The model is still loading; retry in a moment.")
    return pipeline


PipelineDep = Annotated[PredictionPipeline, Depends(get_pipeline)]


# What a lost or refused connection raises: asyncpg's and aiosqlite's errors wrapped by
# SQLAlchemy, the socket's own, and the statement timeout's cancellation.
_UNAVAILABLE = (OperationalError, InterfaceError, OSError, TimeoutError)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session of the app's database for one request; 503 problem when it is unreachable."""
    database: Database | None = request.app.state.database
    if database is None:
        raise DatabaseUnavailable("The database is not configured (CHURN_DATABASE_URL).")
    try:
        async with database.sessions() as session:
            yield session
    except _UNAVAILABLE as error:
        raise DatabaseUnavailable("The database does not answer; retry in a moment.") from error


SessionDep = Annotated[AsyncSession, Depends(get_session)]
