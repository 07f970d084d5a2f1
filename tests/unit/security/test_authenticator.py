from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from datetime import datetime

import pytest

from churn_mlops.security.authenticator import Authenticator, MemoryKeySource, StoredKey
from churn_mlops.security.errors import CredentialStoreUnavailable, NotAuthenticated
from churn_mlops.security.tokens import TokenClaims, TokenService
from tests.fixtures.security import TEST_JWT_SECRET, TEST_PEPPER

pytestmark = pytest.mark.anyio
PEPPER = TEST_PEPPER.encode()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FailingKeys:
    """A key store whose database is down."""

    async def find_key(self, key_id: str) -> StoredKey | None:
        raise ConnectionRefusedError("database down")

    async def record_last_used(self, used: Mapping[str, datetime]) -> None:
        raise ConnectionRefusedError("database down")


class CountingKeys(MemoryKeySource):
    def __init__(self, pepper: bytes) -> None:
        super().__init__(pepper)
        self.lookups = 0

    async def find_key(self, key_id: str) -> StoredKey | None:
        self.lookups += 1
        return await super().find_key(key_id)


def _authenticator(
    ttl: float = 10.0, size: int = 100
) -> tuple[Authenticator, CountingKeys, Clock, Clock]:
    clock, wall = Clock(100.0), Clock(1_800_000_000.0)
    tokens = TokenService(TEST_JWT_SECRET, issuer="i", audience="a", ttl_seconds=60)
    authenticator = Authenticator(
        tokens, PEPPER, cache_ttl=ttl, cache_size=size, clock=clock, wall_clock=wall
    )
    keys = CountingKeys(PEPPER)
    authenticator.keys = keys
    return authenticator, keys, clock, wall


async def test_a_verified_key_is_served_from_the_cache_until_its_ttl() -> None:
    authenticator, keys, clock, _ = _authenticator(ttl=10)
    key = keys.add("svc", ["predict"])
    first = await authenticator.from_api_key(key)
    assert first.id == f"key:{key.split('_')[1]}"
    assert first.scopes == {"predict"}
    clock.now += 9.9
    assert authenticator.cached_key(key) is first
    assert keys.lookups == 1
    clock.now += 0.2
    assert authenticator.cached_key(key) is None
    await authenticator.from_api_key(key)
    assert keys.lookups == 2


async def test_a_revoked_key_works_until_the_ttl_then_is_refused() -> None:
    authenticator, keys, clock, _ = _authenticator(ttl=10)
    key = keys.add("svc", ["predict"])
    await authenticator.from_api_key(key)
    keys.revoke(key.split("_")[1])
    clock.now += 5
    assert (await authenticator.from_api_key(key)).name == "svc"
    clock.now += 6
    with pytest.raises(NotAuthenticated, match="not valid"):
        await authenticator.from_api_key(key)


async def test_forget_key_refuses_a_revoked_key_at_once() -> None:
    authenticator, keys, _, _ = _authenticator(ttl=10)
    key = keys.add("svc", ["predict"])
    await authenticator.from_api_key(key)
    keys.revoke(key.split("_")[1])
    assert authenticator.forget_key(key.split("_")[1]) == 1
    with pytest.raises(NotAuthenticated):
        await authenticator.from_api_key(key)


async def test_a_key_with_a_wrong_secret_part_is_refused() -> None:
    authenticator, keys, _, _ = _authenticator()
    key = keys.add("svc", ["predict"])
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    with pytest.raises(NotAuthenticated, match="not valid"):
        await authenticator.from_api_key(forged)


async def test_database_down_keeps_recently_verified_keys_and_refuses_unknown_ones() -> None:
    authenticator, keys, clock, _ = _authenticator(ttl=10)
    known, unknown = keys.add("known", ["predict"]), MemoryKeySource(PEPPER).add("x", ["read"])
    await authenticator.from_api_key(known)
    authenticator.keys = FailingKeys()
    clock.now += 60  # past the TTL, within the stale window
    assert (await authenticator.from_api_key(known)).name == "known"
    with pytest.raises(CredentialStoreUnavailable):
        await authenticator.from_api_key(unknown)
    clock.now += 400  # past the stale window too
    with pytest.raises(CredentialStoreUnavailable):
        await authenticator.from_api_key(known)


async def test_the_cache_keeps_at_most_its_size() -> None:
    authenticator, keys, _, _ = _authenticator(size=2)
    first, second, third = (keys.add(name, ["predict"]) for name in "abc")
    for key in (first, second, third):
        await authenticator.from_api_key(key)
    assert authenticator.cached_key(first) is None
    assert authenticator.cached_key(second) is not None
    assert authenticator.cached_key(third) is not None


class CountingTokens(TokenService):
    def __init__(self) -> None:
        super().__init__(TEST_JWT_SECRET, issuer="i", audience="a", ttl_seconds=60)
        self.verified = 0

    def verify(self, token: str) -> TokenClaims:
        self.verified += 1
        return super().verify(token)


def test_a_token_is_cached_no_longer_than_until_its_exp() -> None:
    authenticator, _, clock, wall = _authenticator(ttl=300)
    tokens = CountingTokens()
    authenticator.tokens = tokens
    wall.now = time.time()
    # Issued 58 s ago with a 60 s lifetime: 2 s left, far less than the cache's 300 s.
    token = tokens.issue("alice", ["read"], now=wall.now - 58).token
    assert authenticator.from_token(token).id == "user:alice"
    clock.now += 1
    authenticator.from_token(token)
    assert tokens.verified == 1
    clock.now += 2  # past exp: the cache no longer vouches for it, the signature check runs
    with contextlib.suppress(NotAuthenticated):
        authenticator.from_token(token)
    assert tokens.verified == 2


async def test_last_use_is_gathered_and_written_in_one_batch() -> None:
    authenticator, keys, clock, wall = _authenticator()
    first, second = keys.add("a", ["predict"]), keys.add("b", ["predict"])
    for _ in range(5):
        await authenticator.from_api_key(first)
        clock.now += 1
    await authenticator.from_api_key(second)
    assert keys.last_used == {}  # nothing written on the request path
    assert await authenticator.flush_last_used() == 2
    assert set(keys.last_used) == {first.split("_")[1], second.split("_")[1]}
    assert keys.last_used[second.split("_")[1]].timestamp() == pytest.approx(wall.now)
    assert await authenticator.flush_last_used() == 0


async def test_last_use_waits_for_the_next_flush_when_the_database_is_down() -> None:
    authenticator, keys, _, _ = _authenticator()
    key = keys.add("a", ["predict"])
    await authenticator.from_api_key(key)
    authenticator.keys = FailingKeys()
    assert await authenticator.flush_last_used() == 0
    authenticator.keys = keys
    assert await authenticator.flush_last_used() == 1
    assert list(keys.last_used) == [key.split("_")[1]]


async def test_authenticate_without_credentials_is_a_challenge() -> None:
    authenticator, _, _, _ = _authenticator()
    with pytest.raises(NotAuthenticated) as refused:
        await authenticator.authenticate(None, None)
    assert refused.value.headers == {"WWW-Authenticate": 'Bearer realm="churn-mlops"'}
