"""Refusals of the security layer; `serving.errors` turns each into an RFC 9457 problem document.

Every detail is safe to show a caller: it never echoes a credential, a claim or a body.
"""

from __future__ import annotations

from collections.abc import Mapping

REALM = "churn-mlops"


class SecurityError(Exception):
    """A refusal with an HTTP status, a caller-safe detail and response headers."""

    status: int = 400
    errors: None = None

    def __init__(self, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


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


class RequestTooLarge(SecurityError):
    """A body past the size limit, or JSON nested deeper than allowed (413)."""

    status = 413


class CredentialStoreUnavailable(SecurityError):
    """Credentials that no worker has verified recently, while the database is down (503)."""

    status = 503

    def __init__(self) -> None:
        super().__init__(
            "Credentials cannot be verified right now; retry in a moment.",
            {"Retry-After": "1"},
        )
