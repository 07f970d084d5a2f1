"""Every route is either public on purpose or requires a named scope: a new route that is
neither fails here until it is added to the table below with the scope it needs."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from churn_mlops.api.app import ChurnAPI
from churn_mlops.api.middleware import RawRouteDispatch
from churn_mlops.api.scopes import RAW_ROUTE_SCOPES, route_scope
from churn_mlops.security.authenticator import MemoryKeySource
from churn_mlops.security.principal import Scope
from tests.api.security.conftest import AppFactory

PUBLIC = "public"
# A route that admits either scope names both, space-separated (RFC 6750's `scope` attribute).
PREDICT_OR_ADMIN = f"{Scope.PREDICT} {Scope.ADMIN}"
ROUTE_POLICY: dict[tuple[str, str], str] = {
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/docs/assets/{name}"): PUBLIC,  # the docs pages' scripts, styles and icon
    ("GET", "/health/live"): PUBLIC,
    ("GET", "/health/ready"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,  # unless CHURN_METRICS_REQUIRE_AUTH (tested apart)
    ("POST", "/auth/login"): PUBLIC,
    ("POST", "/predict"): Scope.PREDICT,
    ("POST", "/predict/batch"): Scope.PREDICT,
    ("POST", "/customers/{customer_id}/predict"): Scope.PREDICT,
    ("POST", "/customers/{customer_id}/outcome"): PREDICT_OR_ADMIN,
    ("GET", "/model"): Scope.READ,
    ("GET", "/model/compare"): Scope.READ,
    ("GET", "/model/schema"): Scope.READ,
    ("PUT", "/model/champion"): Scope.ADMIN,
    ("PUT", "/model/challenger"): Scope.ADMIN,
    ("DELETE", "/model/challenger"): Scope.ADMIN,
    ("GET", "/cache/stats"): Scope.READ,
    ("GET", "/customers"): Scope.READ,
    ("POST", "/customers"): PREDICT_OR_ADMIN,
    ("GET", "/customers/{customer_id}"): Scope.READ,
    ("GET", "/predictions"): Scope.READ,
    ("DELETE", "/cache"): Scope.ADMIN,
    ("GET", "/auth/keys"): Scope.ADMIN,
    ("POST", "/auth/keys"): Scope.ADMIN,
    ("DELETE", "/auth/keys/{name_or_id}"): Scope.ADMIN,
    ("POST", "/auth/users"): Scope.ADMIN,
    # The Open Inference Protocol: health and metadata are public, as probes and V2 clients
    # read them; only inference needs the predict scope.
    ("GET", "/v2"): PUBLIC,
    ("GET", "/v2/health/live"): PUBLIC,
    ("GET", "/v2/health/ready"): PUBLIC,
    ("GET", "/v2/models/{model_name}"): PUBLIC,
    ("GET", "/v2/models/{model_name}/ready"): PUBLIC,
    ("POST", "/v2/models/{model_name}/infer"): Scope.PREDICT,
    ("GET", "/v2/models/{model_name}/versions/{model_version}"): PUBLIC,
    ("GET", "/v2/models/{model_name}/versions/{model_version}/ready"): PUBLIC,
    ("POST", "/v2/models/{model_name}/versions/{model_version}/infer"): Scope.PREDICT,
}


def _routes(app: ChurnAPI) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for route in iter_route_contexts(app.routes):
        for method in sorted((route.methods or set()) - {"HEAD"}):
            found[(method, str(route.path))] = route_scope(route) or PUBLIC
    return found


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "8879-ZKJOF", path)


def test_every_route_is_public_on_purpose_or_needs_its_scope(make_app: AppFactory) -> None:
    app, _ = make_app()
    assert _routes(app) == ROUTE_POLICY


def test_fast_path_needs_the_predict_scope(make_app: AppFactory) -> None:
    app, _ = make_app()
    assert RAW_ROUTE_SCOPES == {("POST", "/predict"): Scope.PREDICT}
    with TestClient(app):
        assert app.runtime is not None
        endpoint, _ = _raw_routes(app)[("POST", "/predict")]
        guard = endpoint.guard  # type: ignore[attr-defined]
        assert guard.scope == Scope.PREDICT
        assert guard.authenticator is app.runtime.security.authenticator
    # The FastAPI route of the same path declares the same scope.
    assert _routes(app)[("POST", "/predict")] == RAW_ROUTE_SCOPES[("POST", "/predict")]


def _raw_routes(app: ChurnAPI) -> dict[tuple[str, str], tuple[object, object]]:
    """The raw-ASGI routes of the started app's dispatch, under its middleware chain."""
    layer = app._handler
    while layer is not None and not isinstance(layer, RawRouteDispatch):
        layer = getattr(layer, "app", None)
    assert isinstance(layer, RawRouteDispatch)
    return layer.raw_routes


PROTECTED = sorted(
    (method, path, scope) for (method, path), scope in ROUTE_POLICY.items() if scope != PUBLIC
)


@pytest.fixture
def client_keys(make_app: AppFactory) -> tuple[TestClient, MemoryKeySource]:
    app, keys = make_app(fast_predict_enabled=True)
    return TestClient(app), keys


@pytest.mark.parametrize(("method", "path", "scope"), PROTECTED)
def test_protected_route_refuses_missing_credentials_and_other_scopes(
    client_keys: tuple[TestClient, MemoryKeySource], method: str, path: str, scope: str
) -> None:
    client, keys = client_keys
    others = sorted(set(Scope) - set(scope.split()))
    wrong = keys.add("wrong", others)
    with client:
        anonymous = client.request(method, _concrete(path), json={})
        forbidden = client.request(method, _concrete(path), json={}, headers={"X-API-Key": wrong})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="churn-mlops"'
    assert forbidden.status_code == 403
    assert f'scope="{scope}"' in forbidden.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("method", "path"),
    sorted(key for key, scope in ROUTE_POLICY.items() if scope == PUBLIC and "{" not in key[1]),
)
def test_public_route_needs_no_credentials(
    client_keys: tuple[TestClient, MemoryKeySource], method: str, path: str
) -> None:
    client, _ = client_keys
    with client:
        response = client.request(method, path, json={})
    assert response.status_code != 401
