"""The security objects of one app, built from settings; the lifespan attaches the database."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from churn_mlops.core.tasks import cancel_and_wait
from churn_mlops.security.authenticator import LAST_USED_WRITE_SECONDS, Authenticator, KeySource
from churn_mlops.security.passwords import PasswordVerifier
from churn_mlops.security.ratelimit import RateLimiter
from churn_mlops.security.store import CredentialStore
from churn_mlops.security.tokens import TokenService
from churn_mlops.settings import Settings

# Last-use times are written at most this often (and at shutdown).
LAST_USED_INTERVAL_SECONDS = 30.0


def token_service(settings: Settings) -> TokenService:
    return TokenService(
        settings.jwt_secret.get_secret_value(),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.jwt_ttl_seconds,
        algorithm=settings.jwt_algorithm,
    )


def pepper(settings: Settings) -> bytes:
    return settings.api_key_pepper.get_secret_value().encode()


@dataclass
class SecurityServices:
    """What the fast path, the dependencies and the auth routes share."""

    settings: Settings
    tokens: TokenService
    authenticator: Authenticator | None
    """None when authentication is off: every request is the anonymous principal."""
    limiter: RateLimiter | None
    """None when rate limiting (or authentication, which it keys on) is off."""
    passwords: PasswordVerifier = field(default_factory=PasswordVerifier)
    store: CredentialStore | None = None
    _writer: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SecurityServices:
        tokens = token_service(settings)
        authenticator = None
        if settings.auth_enabled:
            authenticator = Authenticator(
                tokens,
                pepper(settings),
                cache_ttl=settings.auth_cache_ttl_seconds,
                cache_size=settings.auth_cache_size,
                lookup_budget=settings.auth_store_timeout_ms / 1000.0,
            )
        limiter = None
        if authenticator is not None and settings.rate_limit_enabled:
            limiter = RateLimiter(
                settings.rate_limit_per_second,
                settings.rate_limit_burst,
                redis_url=settings.redis_url if settings.rate_limit_shared else None,
                key_prefix=settings.rate_limit_key_prefix,
                timeout=settings.rate_limit_redis_timeout_ms / 1000.0,
                limits=authenticator.rate_limit_of,
            )
        return cls(settings, tokens, authenticator, limiter)

    def use_keys(self, keys: KeySource) -> None:
        """Verify API keys against `keys` rather than the database (an app without one)."""
        if self.authenticator is not None:
            self.authenticator.keys = keys

    def start(self, sessions: async_sessionmaker[AsyncSession] | None) -> None:
        """Attach the database (if any; without one only keys given to `use_keys` and no users
        are known) and start writing API keys' last use in the background."""
        if sessions is not None:
            self.store = CredentialStore(sessions, pepper(self.settings))
        if self.authenticator is not None:
            if self.authenticator.keys is None:
                self.authenticator.keys = self.store
            self._writer = asyncio.get_running_loop().create_task(
                self.authenticator.write_last_used(LAST_USED_INTERVAL_SECONDS),
                name="api-key-last-used",
            )

    async def stop(self) -> None:
        # The writer's last flush has LAST_USED_WRITE_SECONDS; its clean-up on a database that
        # drops packets could outlast them, and would hold the shutdown.
        await cancel_and_wait(self._writer, LAST_USED_WRITE_SECONDS + 1.0)
        self._writer = None
        if self.authenticator is not None:
            await self.authenticator.close()
        if self.limiter is not None:
            await self.limiter.close()
