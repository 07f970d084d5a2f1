"""Short-lived bearer tokens (JWT, HS256 pinned): issued by `POST /auth/login`, verified here."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import jwt

from churn_mlops.security.errors import NotAuthenticated

_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int
    """Seconds until the token expires."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    scopes: frozenset[str]
    expires_at: float
    """Unix time of `exp`."""


class TokenService:
    """Issues and verifies HS256 JWTs with a pinned algorithm, issuer and audience.

    `verify` accepts only the configured algorithm (never `none`, never an algorithm the token's
    header chooses), and requires `exp`, `iat`, `iss`, `aud` and `sub`; `exp` has no leeway.
    """

    def __init__(
        self,
        secret: str,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: int,
        algorithm: str = "HS256",
    ) -> None:
        if len(secret) < 32:
            raise ValueError("a token secret has at least 32 characters")
        self._secret = secret
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self.algorithm = algorithm

    def issue(
        self, subject: str, scopes: Iterable[str], *, now: float | None = None
    ) -> IssuedToken:
        issued_at = int(time.time() if now is None else now)
        claims = {
            "sub": subject,
            "scope": " ".join(sorted(scopes)),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": issued_at,
            "exp": issued_at + self.ttl_seconds,
        }
        token = jwt.encode(claims, self._secret, algorithm=self.algorithm)
        return IssuedToken(token, self.ttl_seconds)

    def verify(self, token: str) -> TokenClaims:
        """The token's claims; NotAuthenticated (without saying which check failed) otherwise."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise NotAuthenticated("The bearer token has expired; log in again.") from None
        except jwt.PyJWTError:
            raise NotAuthenticated("The bearer token is not valid.") from None
        subject, scope = claims["sub"], claims.get("scope", "")
        if not isinstance(subject, str) or not subject or not isinstance(scope, str):
            raise NotAuthenticated("The bearer token is not valid.")
        return TokenClaims(subject, frozenset(scope.split()), float(claims["exp"]))
