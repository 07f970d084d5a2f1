from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Mapping
from datetime import datetime

import pytest

from churn_mlops.security.authenticator import (
    Authenticator,
    MemoryKeySource,
    StoredKey,
    StoredUser,
)
from churn_mlops.security.errors import CredentialStoreUnavailable, NotAuthenticated
from churn_mlops.security.principal import Principal, RateLimit
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

    async def find_user_state(self, username: str) -> StoredUser | None:
        raise ConnectionRefusedError("database down")

    async def record_last_used(self, used: Mapping[str, datetime]) -> None:
        raise ConnectionRefusedError("database down")


class CountingKeys(MemoryKeySource):
    def __init__(self, pepper: bytes) -> None:
        super().__init__(pepper)
        self.lookups = 0
        self.user_lookups = 0

    async def find_key(self, key_id: str) -> StoredKey | None:
        self.lookups += 1
        return await super().find_key(key_id)

    async def find_user_state(self, username: str) -> StoredUser | None:
        self.user_lookups += 1
        return await super().find_user_state(username)


class SilentKeys(MemoryKeySource):
    """A store behind a network that drops packets: a lookup waits until `answer` is set."""

    def __init__(self, pepper: bytes) -> None:
        super().__init__(pepper)
        self.answer = asyncio.Event()
        self.lookups = 0

    async def find_key(self, key_id: str) -> StoredKey | None:
        self.lookups += 1
        await self.answer.wait()
        return await super().find_key(key_id)

    async def find_user_state(self, username: str) -> StoredUser | None:
        self.lookups += 1
        await self.answer.wait()
        return await super().find_user_state(username)


def _authenticator(
    ttl: float = 10.0, size: int = 100, budget: float = 0.3
) -> tuple[Authenticator, CountingKeys, Clock, Clock]:
    clock, wall = Clock(100.0), Clock(time.time())
    tokens = TokenService(TEST_JWT_SECRET, issuer="i", audience="a", ttl_seconds=60)
    authenticator = Authenticator(
        tokens,
        PEPPER,
        cache_ttl=ttl,
        cache_size=size,
        lookup_budget=budget,
        clock=clock,
        wall_clock=wall,
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


async def test_a_token_is_cached_no_longer_than_until_its_exp() -> None:
    authenticator, keys, clock, wall = _authenticator(ttl=300)
    tokens = CountingTokens()
    authenticator.tokens = tokens
    keys.add_user("alice", ["read"])
    # Issued 58 s ago with a 60 s lifetime: 2 s left, far less than the cache's 300 s.
    token = tokens.issue("alice", ["read"], now=wall.now - 58).token
    assert (await authenticator.from_token(token)).id == "user:alice"
    clock.now += 1
    await authenticator.from_token(token)
    assert tokens.verified == 1
    clock.now += 2  # past exp: the cache no longer vouches for it, the signature check runs
    with contextlib.suppress(NotAuthenticated):
        await authenticator.from_token(token)
    assert tokens.verified == 2


@pytest.mark.parametrize("change", ["delete", "disable"])
async def test_a_users_tokens_are_refused_once_the_ttl_of_its_state_has_passed(
    change: str,
) -> None:
    authenticator, keys, clock, _ = _authenticator(ttl=10)
    keys.add_user("alice", ["read"])
    token = authenticator.tokens.issue("alice", ["read"]).token
    assert (await authenticator.from_token(token)).name == "alice"
    keys.delete_user("alice") if change == "delete" else keys.disable_user("alice")
    clock.now += 9.9
    assert (await authenticator.from_token(token)).name == "alice"  # within the TTL
    clock.now += 0.2
    with pytest.raises(NotAuthenticated, match="The bearer token is not valid"):
        await authenticator.from_token(token)


async def test_a_token_issued_for_no_known_user_is_refused() -> None:
    authenticator, _, _, _ = _authenticator()
    token = authenticator.tokens.issue("mallory", ["admin"]).token
    with pytest.raises(NotAuthenticated, match="not valid"):
        await authenticator.from_token(token)


async def test_a_token_carries_only_the_scopes_its_user_still_has() -> None:
    authenticator, keys, _, _ = _authenticator()
    keys.add_user("alice", ["read"])  # had read and admin when the token was issued
    token = authenticator.tokens.issue("alice", ["read", "admin"]).token
    assert (await authenticator.from_token(token)).scopes == {"read"}


async def test_the_tokens_of_one_user_share_one_lookup_per_ttl() -> None:
    authenticator, keys, clock, _ = _authenticator(ttl=10)
    keys.add_user("alice", ["read"])
    tokens = [authenticator.tokens.issue("alice", ["read"], now=time.time() - n) for n in range(5)]
    for _ in range(3):
        for issued in tokens:
            await authenticator.from_token(issued.token)
        clock.now += 1
    assert keys.user_lookups == 1
    clock.now += 10
    await authenticator.from_token(tokens[0].token)
    assert keys.user_lookups == 2


async def test_database_down_keeps_recently_verified_users_and_refuses_unknown_ones() -> None:
    authenticator, keys, clock, _ = _authenticator(ttl=10)
    keys.add_user("alice", ["read"])
    keys.add_user("bob", ["read"])
    alice, bob = (authenticator.tokens.issue(name, ["read"]).token for name in ("alice", "bob"))
    await authenticator.from_token(alice)
    authenticator.keys = FailingKeys()
    clock.now += 60
    assert (await authenticator.from_token(alice)).name == "alice"
    with pytest.raises(CredentialStoreUnavailable):
        await authenticator.from_token(bob)


async def _timed(call: Awaitable[Principal]) -> tuple[Principal | Exception, float]:
    """What `call` gave (a principal or the exception it raised) and how long it took."""
    started = time.perf_counter()
    result: Principal | Exception
    try:
        result = await call
    except Exception as error:
        result = error
    return result, time.perf_counter() - started


async def test_a_silent_database_costs_a_recently_verified_key_at_most_the_budget() -> None:
    authenticator, _, clock, _ = _authenticator(ttl=10, budget=0.2)
    keys = SilentKeys(PEPPER)
    authenticator.keys = keys
    key = keys.add("svc", ["predict"])
    keys.answer.set()
    await authenticator.from_api_key(key)
    keys.answer.clear()  # the database now swallows every packet
    clock.now += 11
    first, first_took = await _timed(authenticator.from_api_key(key))
    # The store failed less than a second ago: later requests do not wait at all.
    later, later_took = await _timed(authenticator.from_api_key(key))
    assert getattr(first, "name", None) == getattr(later, "name", None) == "svc"
    assert 0.2 <= first_took < 0.5
    assert later_took < 0.05
    assert keys.lookups == 2  # the first verification, then one that is still waiting
    keys.answer.set()
    await authenticator.close()


async def test_a_silent_database_refuses_an_unknown_key_within_the_budget() -> None:
    authenticator, _, _, _ = _authenticator(budget=0.2)
    keys = SilentKeys(PEPPER)
    authenticator.keys = keys
    key = keys.add("svc", ["predict"])
    refused, took = await _timed(authenticator.from_api_key(key))
    assert isinstance(refused, CredentialStoreUnavailable)
    assert took < 0.5
    again, again_took = await _timed(authenticator.from_api_key(key))
    assert isinstance(again, CredentialStoreUnavailable)
    assert again_took < 0.05  # within the retry interval: refused without waiting
    keys.answer.set()
    await authenticator.close()


async def test_a_lookup_that_answers_late_is_kept_for_the_next_request() -> None:
    authenticator, _, clock, _ = _authenticator(budget=0.05)
    keys = SilentKeys(PEPPER)
    authenticator.keys = keys
    key = keys.add("svc", ["predict"])
    with pytest.raises(CredentialStoreUnavailable):
        await authenticator.from_api_key(key)
    keys.answer.set()
    await asyncio.sleep(0.01)  # the lookup goes on after its callers gave up
    assert authenticator.cached_key(key) is not None
    clock.now += 2
    assert keys.lookups == 1


async def test_concurrent_misses_of_one_key_share_one_lookup() -> None:
    authenticator, _, _, _ = _authenticator()
    keys = SilentKeys(PEPPER)
    authenticator.keys = keys
    key = keys.add("svc", ["predict"])
    waiting = [asyncio.ensure_future(authenticator.from_api_key(key)) for _ in range(20)]
    await asyncio.sleep(0.01)
    keys.answer.set()
    principals = await asyncio.gather(*waiting)
    assert {principal.name for principal in principals} == {"svc"}
    assert keys.lookups == 1


async def test_a_key_with_its_own_rate_limit_reports_it() -> None:
    authenticator, keys, _, _ = _authenticator()
    limited = keys.add("crm", ["predict"], rate_limit=RateLimit(50_000.0, 100_000))
    default = keys.add("svc", ["predict"])
    first, second = (
        await authenticator.from_api_key(limited),
        await authenticator.from_api_key(default),
    )
    assert authenticator.rate_limit_of(first.id) == RateLimit(50_000.0, 100_000)
    assert authenticator.rate_limit_of(second.id) is None


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
