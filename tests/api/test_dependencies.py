"""No route dependency runs in FastAPI's thread pool: a plain `def` dependency costs a thread
hop per request (twice the CPU of a one-row `/predict/batch` when five of them did)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from fastapi.routing import iter_route_contexts

from churn_mlops.api.app import create_app
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings


def _runs_on_the_event_loop(call: Any) -> bool:
    target = call if inspect.isfunction(call) or inspect.ismethod(call) else call.__call__
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


def test_every_route_dependency_is_async(artifact_dir: Path, artifact: ModelArtifact) -> None:
    app = create_app(
        Settings(model_dir=artifact_dir, environment="test", metrics_require_auth=True), artifact
    )
    threaded: set[str] = set()
    routes = 0
    for route in iter_route_contexts(app.routes):
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        routes += 1
        pending = list(dependant.dependencies)
        while pending:
            dependency = pending.pop()
            if dependency.call is not None and not _runs_on_the_event_loop(dependency.call):
                threaded.add(f"{route.path}: {dependency.call!r}")
            pending.extend(dependency.dependencies)
    assert routes > 10
    assert threaded == set()
