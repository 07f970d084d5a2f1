"""Authentication, scopes, rate limits and size limits as callers of the app see them, on the
raw-ASGI `/predict` path and on FastAPI routes alike."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.security.authenticator import MemoryKeySource
from churn_mlops.security.principal import RateLimit
from churn_mlops.security.tokens import TokenService
from tests.api.security.conftest import AppFactory
from tests.fixtures.requests import JSON_HEADERS
from tests.fixtures.security import TEST_JWT_SECRET

BODY = {"customer_id": "8879-ZKJOF", "features": EXAMPLE_FEATURES}
CHALLENGE = 'Bearer realm="churn-mlops"'
INVALID = 'Bearer realm="churn-mlops", error="invalid_token"'


def _tokens(**overrides: object) -> TokenService:
    options: dict[str, object] = {
        "issuer": "churn-mlops",
        "audience": "churn-mlops-api",
        "ttl_seconds": 900,
        **overrides,
    }
    return TokenService(TEST_JWT_SECRET, **options)  # type: ignore[arg-type]


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi-route"])
def fast_path(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def client_keys(make_app: AppFactory, fast_path: bool) -> tuple[TestClient, MemoryKeySource]:
    app, keys = make_app(fast_predict_enabled=fast_path)
    return TestClient(app), keys


def test_predict_without_credentials_is_401_with_a_challenge(
    client_keys: tuple[TestClient, MemoryKeySource],
) -> None:
    client, _ = client_keys
    with client:
        response = client.post("/predict", json=BODY)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGE
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": "This request needs credentials: an API key in X-API-Key, or a bearer token "
        "from POST /auth/login in Authorization.",
    }


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "churn_000000000000_" + "A" * 43},
        {"X-API-Key": "not-a-key"},
        {"Authorization": "Bearer not.a.token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
    ids=["unknown-key", "malformed-key", "malformed-token", "basic-auth"],
)
def test_predict_with_invalid_credentials_is_401_invalid_token(
    client_keys: tuple[TestClient, MemoryKeySource], headers: dict[str, str]
) -> None:
    client, _ = client_keys
    with client:
        response = client.post("/predict", json=BODY, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == INVALID
    assert "not-a-key" not in response.text


def test_predict_with_a_key_of_the_predict_scope_answers(
    client_keys: tuple[TestClient, MemoryKeySource],
) -> None:
    client, keys = client_keys
    key = keys.add("svc", ["predict"])
    with client:
        response = client.post("/predict", json=BODY, headers={"X-API-Key": key})
    assert response.status_code == 200
    assert response.json()["customer_id"] == "8879-ZKJOF"


def test_predict_with_a_key_without_the_predict_scope_is_403(
    client_keys: tuple[TestClient, MemoryKeySource],
) -> None:
    client, keys = client_keys
    key = keys.add("reader", ["read"])
    with client:
        response = client.post("/predict", json=BODY, headers={"X-API-Key": key})
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer realm="churn-mlops", error="insufficient_scope", scope="predict"'
    )
    assert response.json()["detail"] == (
        "These credentials lack the 'predict' scope this request needs."
    )


def test_predict_with_a_bearer_token_answers(
    client_keys: tuple[TestClient, MemoryKeySource],
) -> None:
    client, keys = client_keys
    keys.add_user("alice", ["predict"])
    token = _tokens().issue("alice", ["predict"]).token
    with client:
        response = client.post("/predict", json=BODY, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


@pytest.mark.parametrize("change", ["delete", "disable"])
def test_a_token_of_a_deleted_or_disabled_user_is_refused_once_the_cache_ttl_passed(
    make_app: AppFactory, fast_path: bool, change: str
) -> None:
    app, keys = make_app(auth_cache_ttl_seconds=0, fast_predict_enabled=fast_path)
    keys.add_user("alice", ["predict", "read"])
    headers = {"Authorization": f"Bearer {_tokens().issue('alice', ['predict', 'read']).token}"}
    with TestClient(app) as client:
        before = client.post("/predict", json=BODY, headers=headers).status_code
        keys.delete_user("alice") if change == "delete" else keys.disable_user("alice")
        predicted = client.post("/predict", json=BODY, headers=headers)
        read = client.get("/model", headers=headers)
    assert before == 200
    assert (predicted.status_code, read.status_code) == (401, 401)
    assert predicted.headers["www-authenticate"] == INVALID
    assert predicted.json()["detail"] == "The bearer token is not valid."


def test_a_key_with_its_own_rate_limit_gets_it_rather_than_the_default(
    make_app: AppFactory, fast_path: bool
) -> None:
    app, keys = make_app(
        rate_limit_per_second=0.01, rate_limit_burst=2, fast_predict_enabled=fast_path
    )
    crm = keys.add("crm", ["predict"], rate_limit=RateLimit(0.01, 5))
    default = keys.add("svc", ["predict"])
    with TestClient(app) as client:
        crm_statuses = [
            client.post("/predict", json=BODY, headers={"X-API-Key": crm}).status_code
            for _ in range(6)
        ]
        default_statuses = [
            client.post("/predict", json=BODY, headers={"X-API-Key": default}).status_code
            for _ in range(3)
        ]
        refused = client.post("/predict", json=BODY, headers={"X-API-Key": crm})
    assert crm_statuses == [200] * 5 + [429]
    assert default_statuses == [200, 200, 429]
    assert refused.headers["ratelimit-limit"] == "5"
    assert refused.headers["ratelimit-policy"] == "5;w=500"


@pytest.mark.parametrize(
    "tokens",
    [_tokens(audience="another-api"), _tokens(issuer="someone-else"), _tokens(ttl_seconds=-60)],
    ids=["wrong-audience", "wrong-issuer", "expired"],
)
def test_predict_with_a_token_failing_a_claim_is_401(
    client_keys: tuple[TestClient, MemoryKeySource], tokens: TokenService
) -> None:
    client, _ = client_keys
    token = tokens.issue("alice", ["predict"]).token
    with client:
        response = client.post("/predict", json=BODY, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == INVALID


def test_revoked_key_is_refused_once_the_cache_ttl_passed(make_app: AppFactory) -> None:
    app, keys = make_app(auth_cache_ttl_seconds=0)
    key = keys.add("svc", ["predict"])
    with TestClient(app, headers={"X-API-Key": key}) as client:
        assert client.post("/predict", json=BODY).status_code == 200
        keys.revoke(key.split("_")[1])
        response = client.post("/predict", json=BODY)
    assert response.status_code == 401
    assert response.json()["detail"] == "The API key is not valid."


def test_request_past_max_request_bytes_is_413(make_app: AppFactory, fast_path: bool) -> None:
    app, keys = make_app(max_request_bytes=4096, fast_predict_enabled=fast_path)
    key = keys.add("svc", ["predict"])
    padded = b'{"features": {}, "customer_id": "' + b"x" * 5000 + b'"}'
    with TestClient(app, headers={"X-API-Key": key}) as client:
        single = client.post("/predict", content=padded)
        batch = client.post("/predict/batch", content=b"[" + padded + b"]")
    for response in (single, batch):
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == "The request body is larger than 4096 bytes."


def test_streamed_body_past_max_request_bytes_is_413(make_app: AppFactory, fast_path: bool) -> None:
    app, keys = make_app(max_request_bytes=4096, fast_predict_enabled=fast_path)
    key = keys.add("svc", ["predict"])

    def chunks() -> object:
        for _ in range(10):
            yield b" " * 1000

    with TestClient(app, headers={"X-API-Key": key}) as client:
        # A generator body goes out chunked, with no Content-Length to refuse early.
        single = client.post("/predict", content=chunks(), headers=JSON_HEADERS)  # type: ignore[arg-type]
        batch = client.post("/predict/batch", content=chunks(), headers=JSON_HEADERS)  # type: ignore[arg-type]
    assert single.status_code == 413
    assert batch.status_code == 413


def test_too_many_batch_rows_is_413(app_and_keys: tuple[TestClient, MemoryKeySource]) -> None:
    client, keys = app_and_keys
    key = keys.add("svc", ["predict"])
    response = client.post("/predict/batch", json=[BODY] * 51, headers={"X-API-Key": key})
    assert response.status_code == 413
    assert response.json()["detail"] == (
        "A batch holds at most 50 rows; split it into several requests."
    )


def test_too_deep_json_is_413(make_app: AppFactory, fast_path: bool) -> None:
    app, keys = make_app(max_json_depth=8, fast_predict_enabled=fast_path)
    key = keys.add("svc", ["predict"])
    deep = b'{"features": ' + b"[" * 20 + b"]" * 20 + b"}"
    with TestClient(app, headers={"X-API-Key": key}) as client:
        single = client.post("/predict", content=deep, headers=JSON_HEADERS)
        batch = client.post("/predict/batch", content=b"[" + deep + b"]", headers=JSON_HEADERS)
        shallow = client.post("/predict", content=b'{"features": [[1]]}', headers=JSON_HEADERS)
    assert (single.status_code, batch.status_code) == (413, 413)
    assert single.json()["detail"] == "The JSON body nests arrays and objects deeper than 8 levels."
    assert shallow.status_code == 422


def test_rate_limit_is_429_with_retry_after_per_principal(
    make_app: AppFactory, fast_path: bool
) -> None:
    app, keys = make_app(
        rate_limit_per_second=0.01, rate_limit_burst=2, fast_predict_enabled=fast_path
    )
    first, second = keys.add("one", ["predict"]), keys.add("two", ["predict"])
    with TestClient(app) as client:
        # The same key from two addresses shares one bucket: X-Forwarded-For changes nothing.
        statuses = [
            client.post(
                "/predict", json=BODY, headers={"X-API-Key": first, "X-Forwarded-For": ip}
            ).status_code
            for ip in ("10.0.0.1", "10.0.0.2")
        ]
        refused = client.post(
            "/predict", json=BODY, headers={"X-API-Key": first, "X-Forwarded-For": "10.0.0.3"}
        )
        other = client.post("/predict", json=BODY, headers={"X-API-Key": second})
    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-limit"] == "2"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.headers["ratelimit-reset"] == refused.headers["retry-after"]
    assert other.status_code == 200


def test_auth_off_serves_without_credentials(make_app: AppFactory, fast_path: bool) -> None:
    app, _ = make_app(auth_enabled=False, fast_predict_enabled=fast_path)
    with TestClient(app) as client:
        assert client.post("/predict", json=BODY).status_code == 200
        assert client.get("/model").status_code == 200


def test_read_routes_need_read_and_admin_routes_need_admin(
    app_and_keys: tuple[TestClient, MemoryKeySource],
) -> None:
    client, keys = app_and_keys
    predictor, reader = keys.add("p", ["predict"]), keys.add("r", ["read"])
    admin = keys.add("a", ["admin"])
    assert client.get("/model", headers={"X-API-Key": predictor}).status_code == 403
    assert client.get("/model", headers={"X-API-Key": reader}).status_code == 200
    assert client.get("/cache/stats", headers={"X-API-Key": reader}).status_code == 200
    assert client.delete("/cache", headers={"X-API-Key": reader}).status_code == 403
    assert client.delete("/cache", headers={"X-API-Key": admin}).status_code == 200


def test_health_and_docs_need_no_credentials(
    app_and_keys: tuple[TestClient, MemoryKeySource],
) -> None:
    client, _ = app_and_keys
    for path in ("/health/live", "/health/ready", "/docs", "/openapi.json", "/redoc"):
        assert client.get(path).status_code == 200, path


def test_metrics_require_read_when_configured(make_app: AppFactory) -> None:
    app, keys = make_app(metrics_require_auth=True)
    reader = keys.add("r", ["read"])
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"X-API-Key": reader}).status_code == 200


def test_openapi_declares_both_security_schemes(
    app_and_keys: tuple[TestClient, MemoryKeySource],
) -> None:
    client, _ = app_and_keys
    document = client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key from `churn-mlops keys create` (service-to-service calls).",
    }
    assert schemes["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == "/auth/login"
    predict = document["paths"]["/predict"]["post"]
    assert predict["security"] == [{"APIKeyHeader": []}, {"OAuth2PasswordBearer": []}]
    assert {"401", "403", "413", "422", "429", "503"} <= set(predict["responses"])
    assert "security" not in document["paths"]["/health/live"]["get"]
