"""Turns credentials into a principal, with what the credential store said cached in the worker.

A request's API key is verified once (an HMAC of the key and a database lookup) and then
trusted for `cache_ttl` seconds, so a busy key costs a dict lookup per request. A bearer token's
signature is checked once and its user looked up (is it still there, not disabled, with which
scopes), both trusted for `cache_ttl` as well, and never past the token's `exp`. The price: a key
revoked, or a user deleted or disabled, in another worker or from the CLI keeps working here for
at most `cache_ttl` seconds.

The database is never waited on for more than `lookup_budget` seconds (security/verified.py):
while it is unreachable, a key or user this worker verified within `stale_seconds` keeps working
(an outage degrades, it does not lock out known callers) and an unknown one gets a 503 at once.
`last_used_at` is gathered in memory and written in batches by a background task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from churn_mlops.security.api_keys import (
    generate_api_key,
    hash_api_key,
    key_id_of,
    key_matches,
)
from churn_mlops.security.errors import CredentialStoreUnavailable, NotAuthenticated
from churn_mlops.security.principal import Principal, RateLimit
from churn_mlops.security.tokens import TokenService
from churn_mlops.security.verified import StoreOutage, StoreUnavailable, VerifiedRecords

logger = logging.getLogger("churn_mlops.security")

MISSING_CREDENTIALS = (
    "This request needs credentials: an API key in X-API-Key, or a bearer token from "
    "POST /auth/login in Authorization."
)
_INVALID_KEY = "The API key is not valid."
_INVALID_TOKEN = "The bearer token is not valid."  # noqa: S105 - a message, not a secret
_KEY_PRINCIPAL = "key:"
_USER_PRINCIPAL = "user:"
# After a failed or late lookup, how long requests do not wait on the credential store.
STORE_RETRY_SECONDS = 1.0
# Last-use times wait for the next flush past this (a shutdown never hangs on the database).
LAST_USED_WRITE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What the database holds of an API key."""

    key_id: str
    name: str
    key_hash: str
    scopes: frozenset[str]
    revoked: bool
    rate_limit: RateLimit | None = None
    """The key's own rate limit; None: the service's default."""


@dataclass(frozen=True, slots=True)
class StoredUser:
    """What verifying a bearer token needs of its user: whether it may still use one."""

    username: str
    scopes: frozenset[str]
    disabled: bool


class KeySource(Protocol):
    """Where API keys and users are looked up (the database, through `CredentialStore`)."""

    async def find_key(self, key_id: str) -> StoredKey | None: ...

    async def find_user_state(self, username: str) -> StoredUser | None: ...

    async def record_last_used(self, used: Mapping[str, datetime]) -> None: ...


_Entry = tuple[Principal, float]
T = TypeVar("T")


class Authenticator:
    """Verifies API keys and bearer tokens; the cache makes a repeated credential a dict lookup."""

    def __init__(
        self,
        tokens: TokenService,
        pepper: bytes,
        *,
        cache_ttl: float = 10.0,
        cache_size: int = 10_000,
        stale_seconds: float = 300.0,
        lookup_budget: float = 0.3,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.tokens = tokens
        self.keys: KeySource | None = None
        """Attached by the app's lifespan once the database is open."""
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self.stale_seconds = stale_seconds
        self.lookup_budget = lookup_budget
        self._pepper = pepper
        self._clock = clock
        self._wall_clock = wall_clock
        self.store_outage = StoreOutage(STORE_RETRY_SECONDS, clock)
        # plaintext key -> its principal; username -> its state
        self._keys: VerifiedRecords[Principal] = self._records()
        self._users: VerifiedRecords[StoredUser] = self._records()
        # token -> (principal, monotonic time until which it is trusted)
        self._tokens: dict[str, _Entry] = {}
        # principal id of a key with a rate limit of its own -> that limit
        self._rate_limits: dict[str, RateLimit] = {}
        # principal id of a key -> monotonic time it was last used; written in batches
        self._last_used: dict[str, float] = {}

    def _records(self) -> VerifiedRecords[T]:
        return VerifiedRecords(
            self.store_outage,
            ttl=self.cache_ttl,
            stale_seconds=self.stale_seconds,
            budget=self.lookup_budget,
            size=self.cache_size,
            clock=self._clock,
        )

    # -- API keys ------------------------------------------------------------------------------

    def cached_key(self, key: str) -> Principal | None:
        """The principal of a key verified less than `cache_ttl` ago (the hot path), or None."""
        now = self._clock()
        principal = self._keys.fresh(key, now)
        if principal is not None:
            self._last_used[principal.id] = now
        return principal

    async def verify_key(self, key: str) -> Principal:
        """Check `key` against the database (the cache missed); NotAuthenticated if it fails,
        CredentialStoreUnavailable if the database cannot tell in time."""
        key_id = key_id_of(key)
        if key_id is None:
            raise NotAuthenticated(_INVALID_KEY)
        try:
            principal = await self._keys.verify(key, lambda: self._look_up_key(key, key_id))
        except StoreUnavailable:
            raise CredentialStoreUnavailable() from None
        if principal is None:
            raise NotAuthenticated(_INVALID_KEY)
        self._last_used[principal.id] = self._clock()
        return principal

    async def from_api_key(self, key: str) -> Principal:
        return self.cached_key(key) or await self.verify_key(key)

    def forget_key(self, key_id: str) -> int:
        """Drop a key from this worker's cache at once (after revoking it); entries removed."""
        principal_id = _KEY_PRINCIPAL + key_id
        return self._keys.drop(lambda principal: principal.id == principal_id)

    def rate_limit_of(self, principal_id: str) -> RateLimit | None:
        """The rate limit of a key that has its own (None: the service's default applies)."""
        return self._rate_limits.get(principal_id)

    async def _look_up_key(self, key: str, key_id: str) -> Principal | None:
        if self.keys is None:
            raise RuntimeError("no key store attached yet")
        stored = await self.keys.find_key(key_id)
        if stored is None or stored.revoked or not key_matches(self._pepper, key, stored.key_hash):
            return None
        principal = Principal(_KEY_PRINCIPAL + stored.key_id, stored.name, "api_key", stored.scopes)
        self._rate_limits.pop(principal.id, None)
        if stored.rate_limit is not None:
            if len(self._rate_limits) >= self.cache_size:
                del self._rate_limits[next(iter(self._rate_limits))]
            self._rate_limits[principal.id] = stored.rate_limit
        return principal

    # -- bearer tokens -------------------------------------------------------------------------

    def cached_token(self, token: str) -> Principal | None:
        """The principal of a token verified recently, while its user's state is fresh."""
        entry = self._tokens.get(token)
        if entry is not None and entry[1] > self._clock():
            return entry[0]
        return None

    async def verify_token(self, token: str) -> Principal:
        """The principal of a bearer token whose signature verifies and whose user still exists
        and is not disabled; NotAuthenticated otherwise. Its scopes are the token's that the
        user still has."""
        claims = self.tokens.verify(token)
        subject = claims.subject
        try:
            user = await self._users.verify(subject, lambda: self._look_up_user(subject))
        except StoreUnavailable:
            raise CredentialStoreUnavailable() from None
        if user is None or user.disabled:
            raise NotAuthenticated(_INVALID_TOKEN)
        principal = Principal(
            _USER_PRINCIPAL + subject, subject, "user", claims.scopes & user.scopes
        )
        # Trusted while the user's state is, and never past exp.
        now = self._clock()
        until = min(self._users.fresh_until(subject), now + claims.expires_at - self._wall_clock())
        if until > now:
            if token not in self._tokens and len(self._tokens) >= self.cache_size:
                del self._tokens[next(iter(self._tokens))]  # the oldest verified
            self._tokens[token] = (principal, until)
        return principal

    async def from_token(self, token: str) -> Principal:
        """The principal of a bearer token; NotAuthenticated if it does not verify."""
        return self.cached_token(token) or await self.verify_token(token)

    async def from_authorization(self, value: str) -> Principal:
        scheme, _, token = value.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise NotAuthenticated("The Authorization header does not hold a bearer token.")
        return await self.from_token(token)

    async def _look_up_user(self, username: str) -> StoredUser:
        if self.keys is None:
            raise RuntimeError("no user store attached yet")
        user = await self.keys.find_user_state(username)
        # A deleted user is remembered as refused, like a disabled one: its tokens are refused
        # from memory until the next lookup, and during an outage.
        return user or StoredUser(username, frozenset(), disabled=True)

    # -- both ----------------------------------------------------------------------------------

    async def authenticate(self, api_key: str | None, authorization: str | None) -> Principal:
        """The principal of an `X-API-Key` value or else an `Authorization` header value."""
        if api_key:
            return await self.from_api_key(api_key)
        if authorization:
            return await self.from_authorization(authorization)
        raise NotAuthenticated(MISSING_CREDENTIALS, invalid=False)

    async def close(self) -> None:
        """Cancel the credential lookups still running (at shutdown)."""
        await asyncio.gather(self._keys.close(), self._users.close())

    # -- last use ------------------------------------------------------------------------------

    def take_last_used(self) -> dict[str, datetime]:
        """Key ids and when each was last used, since the last call (as UTC datetimes)."""
        used, self._last_used = self._last_used, {}
        offset = self._wall_clock() - self._clock()
        return {
            principal_id.removeprefix(_KEY_PRINCIPAL): datetime.fromtimestamp(at + offset, UTC)
            for principal_id, at in used.items()
        }

    async def flush_last_used(self) -> int:
        """Write the gathered last-use times; on failure they wait for the next flush."""
        used = self.take_last_used()
        if not used or self.keys is None:
            return 0
        try:
            async with asyncio.timeout(LAST_USED_WRITE_SECONDS):
                await self.keys.record_last_used(used)
        except Exception as error:
            logger.warning("could not record API key use: %s", type(error).__name__)
            offset = self._clock() - self._wall_clock()
            for key_id, at in used.items():
                principal_id = _KEY_PRINCIPAL + key_id
                self._last_used.setdefault(principal_id, at.timestamp() + offset)
            return 0
        return len(used)

    async def write_last_used(self, interval: float) -> None:
        """Background task: flush every `interval` seconds until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(interval)
                await self.flush_last_used()
        finally:
            await asyncio.shield(self.flush_last_used())


class MemoryKeySource:
    """API keys and users held in memory: for an app embedded without a database, and tests."""

    def __init__(self, pepper: bytes) -> None:
        self._pepper = pepper
        self._keys: dict[str, StoredKey] = {}
        self._users: dict[str, StoredUser] = {}
        self.last_used: dict[str, datetime] = {}

    def add(self, name: str, scopes: Iterable[str], rate_limit: RateLimit | None = None) -> str:
        """A new key with these scopes (and its own rate limit, if given); the plaintext key."""
        new = generate_api_key()
        key_hash = hash_api_key(self._pepper, new.key)
        self._keys[new.key_id] = StoredKey(
            new.key_id, name, key_hash, frozenset(scopes), False, rate_limit
        )
        return new.key

    def revoke(self, key_id: str) -> None:
        self._keys[key_id] = replace(self._keys[key_id], revoked=True)

    def add_user(self, username: str, scopes: Iterable[str]) -> None:
        """A user whose bearer tokens (issued elsewhere, or by a test) verify here."""
        self._users[username] = StoredUser(username, frozenset(scopes), disabled=False)

    def disable_user(self, username: str) -> None:
        self._users[username] = replace(self._users[username], disabled=True)

    def delete_user(self, username: str) -> None:
        del self._users[username]

    async def find_key(self, key_id: str) -> StoredKey | None:
        return self._keys.get(key_id)

    async def find_user_state(self, username: str) -> StoredUser | None:
        return self._users.get(username)

    async def record_last_used(self, used: Mapping[str, datetime]) -> None:
        self.last_used.update(used)
