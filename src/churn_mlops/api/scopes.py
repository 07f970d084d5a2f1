"""Where every route's scope is declared: typed dependency aliases for the FastAPI routes, and
one table for the raw-ASGI routes that answer before routing.

A route states what it needs in its signature (`caller: ReadAccess`); a route that needs
nothing is public on purpose (tests/api/security/test_route_policy.py lists both kinds).

The security schemes (an `X-API-Key` header, or an OAuth2 password-flow bearer token from
`POST /auth/login`) are declared through FastAPI's security classes, so the OpenAPI document
and the docs' Authorize button show them on every protected route.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer

from churn_mlops.api.deps import RuntimeDep
from churn_mlops.api.schemas.problem import Problem
from churn_mlops.security.errors import InsufficientScope
from churn_mlops.security.principal import ANONYMOUS, Principal, Scope

API_KEY_HEADER = "X-API-Key"
LOGIN_PATH = "/auth/login"

api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="APIKeyHeader",
    description="An API key from `churn-mlops keys create` (service-to-service calls).",
    auto_error=False,
)
bearer_scheme = OAuth2PasswordBearer(
    tokenUrl=LOGIN_PATH,
    scheme_name="OAuth2PasswordBearer",
    description="A short-lived bearer token from `POST /auth/login`.",
    auto_error=False,
)


async def get_principal(
    request: Request,
    runtime: RuntimeDep,
    api_key: Annotated[str | None, Depends(api_key_scheme)],
    token: Annotated[str | None, Depends(bearer_scheme)],
) -> Principal:
    """The authenticated caller, after its rate limit; ANONYMOUS when auth is off."""
    authenticator = runtime.security.authenticator
    if authenticator is None:
        return ANONYMOUS
    # The scheme objects declare the credentials in the OpenAPI document; the header itself is
    # read as the fast path reads it, so that `Basic ...` is refused the same way (invalid).
    del token
    principal = await authenticator.authenticate(api_key, request.headers.get("authorization"))
    limiter = runtime.security.limiter
    if limiter is not None:
        await limiter.check(principal.id)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


class RequireScope:
    """A dependency that admits principals holding any one of `scopes`; `route_scope` finds it.

    `scope` names them space-separated, as RFC 6750's `scope` attribute of the 403 challenge
    lists the scopes that would do."""

    def __init__(self, *scopes: str) -> None:
        self.scopes = tuple(str(scope) for scope in scopes)
        self.scope = " ".join(self.scopes)

    async def __call__(self, principal: CurrentPrincipal) -> Principal:
        if not any(principal.allows(scope) for scope in self.scopes):
            raise InsufficientScope(self.scope)
        return principal

    def __repr__(self) -> str:
        return f"RequireScope({', '.join(map(repr, self.scopes))})"


PredictAccess = Annotated[Principal, Depends(RequireScope(Scope.PREDICT))]
"""A caller allowed to ask for predictions."""
ReadAccess = Annotated[Principal, Depends(RequireScope(Scope.READ))]
"""A caller allowed to read customers, predictions, the model and statistics."""
AdminAccess = Annotated[Principal, Depends(RequireScope(Scope.ADMIN))]
"""A caller allowed to manage keys, users and the cache."""
PredictOrAdminAccess = Annotated[Principal, Depends(RequireScope(Scope.PREDICT, Scope.ADMIN))]
"""A caller allowed to predict, or an administrator: recording customers' outcomes."""

RAW_ROUTE_SCOPES: Mapping[tuple[str, str], str] = MappingProxyType(
    {("POST", "/predict"): str(Scope.PREDICT)}
)
"""The scope of each route answered before FastAPI's routing (the fast path), by method and path.
The FastAPI route of the same path declares the same alias; a test checks they agree."""


def _problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _problem("Missing or invalid credentials (see WWW-Authenticate)"),
    403: _problem("The credentials lack the scope this route needs"),
    429: _problem("Too many requests for these credentials: see Retry-After"),
}
"""The refusals of a protected route, for its `responses=` (so the OpenAPI lists them)."""


def route_scope(route: Any) -> str | None:
    """The scope a route requires, from its dependencies (and theirs); None if none.

    `route` is an APIRoute, or a `fastapi.routing.iter_route_contexts` item for a route as
    included in an app (with the include's dependencies)."""
    dependant = getattr(route, "dependant", None)
    pending = list(dependant.dependencies) if dependant is not None else []
    while pending:
        dependency = pending.pop()
        if isinstance(dependency.call, RequireScope):
            return dependency.call.scope
        pending.extend(dependency.dependencies)
    return None
