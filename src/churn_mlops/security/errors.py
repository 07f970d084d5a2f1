"""Refusals of the security layer: ServiceErrors, so `api.errors` renders them as every other.

Every detail is safe to show a caller: it never echoes a credential, a claim or a body.
"""

from __future__ import annotations

from collections.abc import Mapping

from churn_mlops.core.errors import ServiceError

REALM = "churn-mlops"


class SecurityError(ServiceError):
    """A refusal of the security layer: an HTTP status, a caller-safe detail and headers."""

    status: int = 400

    def __init__(self, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail, headers=headers)


class NotAuthenticated(SecurityError):
    """Missing, malformed, expired, revoked or otherwise invalid credentials (401)."""

    status = 401

    def __init__(self, detail: str, *, invalid: bool = True) -> None:
        # RFC 6750 section 3: no error code when the request carried no credentials at all.
        challenge = f'Bearer realm="{REALM}"'
        if invalid:
            challenge += ', error="invalid_token"'
        super().__init__(detail, {"WWW-Authenticate": challenge})


class InsufficientScope(SecurityError):
    """Valid credentials without the scope the route needs (403)."""

    status = 403

    def __init__(self, scope: str) -> None:
        scope = str(scope)
        super().__init__(
            f"These credentials lack the '{scope}' scope this request needs.",
            {
                "WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", '
                f'scope="{scope}"'
            },
        )
        self.scope = scope


class RateLimited(SecurityError):
    """The principal's token bucket is empty (429)."""

    status = 429

    def __init__(self, retry_after: float, limit: int, window_seconds: float) -> None:
        wait = max(1, int(retry_after + 0.999))
        super().__init__(
            f"Too many requests for these credentials; retry in {wait} s.",
            {
                "Retry-After": str(wait),
                "RateLimit-Limit": str(limit),
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(wait),
                "RateLimit-Policy": f"{limit};w={max(1, round(window_seconds))}",
            },
        )
        self.retry_after = wait


class CredentialStoreUnavailable(SecurityError):
    """Credentials that no worker has verified recently, while the database is down (503)."""

    status = 503

    def __init__(self) -> None:
        super().__init__(
            "Credentials cannot be verified right now; retry in a moment.",
            {"Retry-After": "1"},
        )
