from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from churn_mlops.security.errors import NotAuthenticated
from churn_mlops.security.tokens import TokenService
from tests.fixtures.security import TEST_JWT_SECRET

ISSUER, AUDIENCE = "churn-mlops", "churn-mlops-api"


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(TEST_JWT_SECRET, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=600)


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "alice",
        "scope": "read",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_verify_returns_the_issued_claims(tokens: TokenService) -> None:
    issued = tokens.issue("alice", ["read", "predict"])
    claims = tokens.verify(issued.token)
    assert issued.expires_in == 600
    assert claims.subject == "alice"
    assert claims.scopes == {"read", "predict"}
    assert claims.expires_at == pytest.approx(time.time() + 600, abs=5)


def test_verify_refuses_an_expired_token(tokens: TokenService) -> None:
    issued = tokens.issue("alice", ["read"], now=time.time() - 601)
    with pytest.raises(NotAuthenticated, match="expired"):
        tokens.verify(issued.token)


def test_verify_refuses_alg_none(tokens: TokenService) -> None:
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."
    with pytest.raises(NotAuthenticated, match="not valid"):
        tokens.verify(token)


@pytest.mark.parametrize("algorithm", ["HS512", "HS384"])
def test_verify_refuses_another_hmac_algorithm(tokens: TokenService, algorithm: str) -> None:
    token = jwt.encode(_claims(), TEST_JWT_SECRET, algorithm=algorithm)
    with pytest.raises(NotAuthenticated, match="not valid"):
        tokens.verify(token)


def test_verify_refuses_an_rs256_header_over_an_hmac_signature(tokens: TokenService) -> None:
    # The algorithm-confusion attack: the header names RS256, the signature is HMAC-SHA256.
    good = jwt.encode(_claims(), TEST_JWT_SECRET, algorithm="HS256")
    _, payload, signature = good.split(".")
    token = f"{_b64({'alg': 'RS256', 'typ': 'JWT'})}.{payload}.{signature}"
    with pytest.raises(NotAuthenticated, match="not valid"):
        tokens.verify(token)


@pytest.mark.parametrize(
    "claims",
    [
        _claims(aud="someone-else"),
        _claims(iss="someone-else"),
        _claims(exp=None),
        _claims(iat=None),
        _claims(sub=None),
        _claims(aud=None),
    ],
    ids=["audience", "issuer", "no-exp", "no-iat", "no-sub", "no-aud"],
)
def test_verify_refuses_wrong_or_missing_claims(
    tokens: TokenService, claims: dict[str, object]
) -> None:
    token = jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")
    with pytest.raises(NotAuthenticated):
        tokens.verify(token)


def test_verify_refuses_a_tampered_signature(tokens: TokenService) -> None:
    header, payload, signature = tokens.issue("alice", ["read"]).token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(NotAuthenticated, match="not valid"):
        tokens.verify(f"{header}.{payload}.{flipped}")


def test_verify_refuses_a_tampered_payload(tokens: TokenService) -> None:
    header, _, signature = tokens.issue("alice", ["read"]).token.split(".")
    escalated = _b64(_claims(scope="read predict admin"))
    with pytest.raises(NotAuthenticated, match="not valid"):
        tokens.verify(f"{header}.{escalated}.{signature}")


def test_verify_refuses_a_token_signed_with_another_secret(tokens: TokenService) -> None:
    token = jwt.encode(_claims(), "another-secret-of-at-least-32-characters!", algorithm="HS256")
    with pytest.raises(NotAuthenticated, match="not valid"):
        tokens.verify(token)


def test_token_service_refuses_a_short_secret() -> None:
    with pytest.raises(ValueError, match="32 characters"):
        TokenService("short", issuer=ISSUER, audience=AUDIENCE, ttl_seconds=60)
