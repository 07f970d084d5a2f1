"""Users and API keys stored on SQLite and on the machine's PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from churn_mlops.db.engine import Database
from churn_mlops.security.api_keys import key_id_of, key_matches
from churn_mlops.security.authenticator import StoredUser
from churn_mlops.security.principal import RateLimit
from churn_mlops.security.store import CredentialConflict, CredentialStore
from tests.fixtures.security import TEST_PEPPER

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
PEPPER = TEST_PEPPER.encode()


@pytest.fixture
async def store(migrated_database_url: str):  # type: ignore[no-untyped-def]
    database = Database.from_url(migrated_database_url)
    try:
        yield CredentialStore(database.sessions, PEPPER)
    finally:
        await database.dispose()


def _name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


async def test_create_key_stores_only_its_hash(store: CredentialStore) -> None:
    created = await store.create_key(_name(), ["read", "predict"])
    assert key_id_of(created.key) == created.info.key_id
    stored = await store.find_key(created.info.key_id)
    assert stored is not None
    assert stored.scopes == {"read", "predict"}
    assert not stored.revoked
    assert created.key not in stored.key_hash
    assert key_matches(PEPPER, created.key, stored.key_hash)


async def test_create_key_refuses_a_taken_name(store: CredentialStore) -> None:
    name = _name()
    await store.create_key(name, ["read"])
    with pytest.raises(CredentialConflict, match="exists already"):
        await store.create_key(name, ["read"])


async def test_revoke_key_by_name_and_by_id(store: CredentialStore) -> None:
    by_name, by_id = (
        await store.create_key(_name(), ["read"]),
        await store.create_key(_name(), ["read"]),
    )
    revoked = await store.revoke_key(by_name.info.name)
    assert revoked is not None
    assert revoked.revoked_at is not None
    assert (await store.revoke_key(by_id.info.key_id)) is not None
    for created in (by_name, by_id):
        stored = await store.find_key(created.info.key_id)
        assert stored is not None
        assert stored.revoked
    assert await store.revoke_key("no-such-key") is None


async def test_record_last_used_only_moves_forward(store: CredentialStore) -> None:
    created = await store.create_key(_name(), ["read"])
    later = datetime(2030, 1, 1, 12, tzinfo=UTC)
    await store.record_last_used({created.info.key_id: later})
    await store.record_last_used({created.info.key_id: later - timedelta(hours=1)})
    (listed,) = [k for k in await store.list_keys() if k.key_id == created.info.key_id]
    assert listed.last_used_at is not None
    assert listed.last_used_at.astimezone(UTC) == later


async def test_create_user_and_find_it(store: CredentialStore) -> None:
    name = _name()
    await store.create_user(name, "$argon2id$fake", ["read"])
    user = await store.find_user(name)
    assert user is not None
    assert (user.username, user.password_hash, user.scopes, user.disabled) == (
        name,
        "$argon2id$fake",
        {"read"},
        False,
    )
    assert await store.find_user(_name()) is None
    with pytest.raises(CredentialConflict):
        await store.create_user(name, "$argon2id$other", ["read"])


async def test_a_keys_own_rate_limit_is_stored_and_found(store: CredentialStore) -> None:
    limited = await store.create_key(_name(), ["predict"], RateLimit(250.0, 500))
    default = await store.create_key(_name(), ["predict"])
    assert limited.info.rate_limit == RateLimit(250.0, 500)
    found_limited = await store.find_key(limited.info.key_id)
    found_default = await store.find_key(default.info.key_id)
    assert found_limited is not None
    assert found_default is not None
    assert found_limited.rate_limit == RateLimit(250.0, 500)
    assert found_default.rate_limit is None
    listed = {info.key_id: info.rate_limit for info in await store.list_keys()}
    assert listed[limited.info.key_id] == RateLimit(250.0, 500)


async def test_disable_and_delete_a_user(store: CredentialStore) -> None:
    name = _name()
    await store.create_user(name, "$argon2id$fake", ["read", "predict"])
    assert await store.find_user_state(name) == StoredUser(
        name, frozenset({"read", "predict"}), False
    )
    assert await store.set_user_disabled(name, True)
    assert await store.find_user_state(name) == StoredUser(
        name, frozenset({"read", "predict"}), True
    )
    assert await store.delete_user(name)
    assert await store.find_user_state(name) is None
    assert not await store.delete_user(name)
    assert not await store.set_user_disabled(name, True)
