"""Turns credentials into a principal, with verified ones cached in the worker.

A request's API key or bearer token is verified once (an HMAC of the key and a database lookup,
or a JWT signature check) and then trusted for `cache_ttl` seconds, so a busy key costs a dict
lookup per request. The price: a key revoked in another worker (or from the CLI) keeps working
here for at most `cache_ttl` seconds; a token is never trusted past its `exp`.

While the database is unreachable, a key this worker verified within `stale_seconds` keeps
working (an outage degrades, it does not lock out known callers); an unknown key gets a 503.
`last_used_at` is gathered in memory and written in batches by a background task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from churn_mlops.security.api_keys import (
    generate_api_key,
    hash_api_key,
    key_id_of,
    key_matches,
)
from churn_mlops.security.errors import CredentialStoreUnavailable, NotAuthenticated
from churn_mlops.security.principal import Principal
from churn_mlops.security.tokens import TokenService

logger = logging.getLogger("churn_mlops.security")

MISSING_CREDENTIALS = (
    "This request needs credentials: an API key in X-API-Key, or a bearer token from "
    "POST /auth/login in Authorization."
)
_INVALID_KEY = "The API key is not valid."
_KEY_PRINCIPAL = "key:"


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What the database holds of an API key."""

    key_id: str
    name: str
    key_hash: str
    scopes: frozenset[str]
    revoked: bool


class KeySource(Protocol):
    """Where API keys are looked up (the database, through `CredentialStore`)."""

    async def find_key(self, key_id: str) -> StoredKey | None: ...

    async def record_last_used(self, used: Mapping[str, datetime]) -> None: ...


_Entry = tuple[Principal, float]


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
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.tokens = tokens
        self.keys: KeySource | None = None
        """Attached by the app's lifespan once the database is open."""
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self.stale_seconds = stale_seconds
        self._pepper = pepper
        self._clock = clock
        self._wall_clock = wall_clock
        # credential -> (principal, monotonic time until which it is trusted)
        self._keys: dict[str, _Entry] = {}
        self._tokens: dict[str, _Entry] = {}
        # principal id of a key -> monotonic time it was last used; written in batches
        self._last_used: dict[str, float] = {}

    # -- API keys ------------------------------------------------------------------------------

    def cached_key(self, key: str) -> Principal | None:
        """The principal of a key verified less than `cache_ttl` ago (the hot path), or None."""
        entry = self._keys.get(key)
        if entry is None:
            return None
        now = self._clock()
        if entry[1] <= now:
            return None
        principal = entry[0]
        self._last_used[principal.id] = now
        return principal

    async def verify_key(self, key: str) -> Principal:
        """Check `key` against the database (the cache missed); NotAuthenticated if it fails."""
        key_id = key_id_of(key)
        if key_id is None:
            raise NotAuthenticated(_INVALID_KEY)
        now = self._clock()
        previous = self._keys.get(key)
        try:
            if self.keys is None:
                raise RuntimeError("no key store attached yet")
            stored = await self.keys.find_key(key_id)
        except Exception as error:
            if previous is not None and now - previous[1] < self.stale_seconds:
                return previous[0]
            logger.warning("API key %s not verifiable: %s", key_id, type(error).__name__)
            raise CredentialStoreUnavailable() from None
        if stored is None or stored.revoked or not key_matches(self._pepper, key, stored.key_hash):
            self._keys.pop(key, None)
            raise NotAuthenticated(_INVALID_KEY)
        principal = Principal(_KEY_PRINCIPAL + stored.key_id, stored.name, "api_key", stored.scopes)
        self._remember(self._keys, key, principal, now + self.cache_ttl)
        self._last_used[principal.id] = now
        return principal

    async def from_api_key(self, key: str) -> Principal:
        return self.cached_key(key) or await self.verify_key(key)

    def forget_key(self, key_id: str) -> int:
        """Drop a key from this worker's cache at once (after revoking it); entries removed."""
        principal_id = _KEY_PRINCIPAL + key_id
        stale = [key for key, (principal, _) in self._keys.items() if principal.id == principal_id]
        for key in stale:
            del self._keys[key]
        return len(stale)

    # -- bearer tokens -------------------------------------------------------------------------

    def from_token(self, token: str) -> Principal:
        """The principal of a bearer token; NotAuthenticated if it does not verify."""
        entry = self._tokens.get(token)
        now = self._clock()
        if entry is not None and entry[1] > now:
            return entry[0]
        claims = self.tokens.verify(token)
        principal = Principal("user:" + claims.subject, claims.subject, "user", claims.scopes)
        # Never trusted past exp, whatever the cache's TTL.
        trusted_for = min(self.cache_ttl, claims.expires_at - self._wall_clock())
        if trusted_for > 0:
            self._remember(self._tokens, token, principal, now + trusted_for)
        return principal

    def from_authorization(self, value: str) -> Principal:
        scheme, _, token = value.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise NotAuthenticated("The Authorization header does not hold a bearer token.")
        return self.from_token(token)

    # -- both ----------------------------------------------------------------------------------

    async def authenticate(self, api_key: str | None, authorization: str | None) -> Principal:
        """The principal of an `X-API-Key` value or else an `Authorization` header value."""
        if api_key:
            return await self.from_api_key(api_key)
        if authorization:
            return self.from_authorization(authorization)
        raise NotAuthenticated(MISSING_CREDENTIALS, invalid=False)

    def _remember(
        self, cache: dict[str, _Entry], credential: str, principal: Principal, until: float
    ) -> None:
        if credential not in cache and len(cache) >= self.cache_size:
            del cache[next(iter(cache))]  # the oldest verified
        cache[credential] = (principal, until)

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
    """API keys held in memory: for an app embedded without a database, and for tests."""

    def __init__(self, pepper: bytes) -> None:
        self._pepper = pepper
        self._keys: dict[str, StoredKey] = {}
        self.last_used: dict[str, datetime] = {}

    def add(self, name: str, scopes: Iterable[str]) -> str:
        """A new key with these scopes; the plaintext key."""
        new = generate_api_key()
        self._keys[new.key_id] = StoredKey(
            new.key_id, name, hash_api_key(self._pepper, new.key), frozenset(scopes), False
        )
        return new.key

    def revoke(self, key_id: str) -> None:
        stored = self._keys[key_id]
        self._keys[key_id] = StoredKey(
            stored.key_id, stored.name, stored.key_hash, stored.scopes, True
        )

    async def find_key(self, key_id: str) -> StoredKey | None:
        return self._keys.get(key_id)

    async def record_last_used(self, used: Mapping[str, datetime]) -> None:
        self.last_used.update(used)
