"""Users and API keys in the database (PostgreSQL or SQLite, through the async session factory)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from churn_mlops.db.credentials import ApiKey, User
from churn_mlops.security.api_keys import generate_api_key, hash_api_key
from churn_mlops.security.authenticator import StoredKey, StoredUser
from churn_mlops.security.principal import RateLimit


class CredentialConflict(ValueError):
    """A user or key of that name exists already."""


@dataclass(frozen=True)
class KeyInfo:
    """An API key as `keys list` shows it: never the key, never its hash."""

    key_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    rate_limit: RateLimit | None = None
    """The key's own rate limit; None: the service's default."""


@dataclass(frozen=True)
class CreatedKey:
    info: KeyInfo
    key: str
    """The plaintext key, to be shown once."""


@dataclass(frozen=True)
class UserRecord:
    username: str
    password_hash: str
    scopes: frozenset[str]
    disabled: bool


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every time stored here is UTC.
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


def _rate_limit(row: ApiKey) -> RateLimit | None:
    if row.rate_limit_per_second is None or row.rate_limit_burst is None:
        return None
    return RateLimit(row.rate_limit_per_second, row.rate_limit_burst)


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(
        row.key_id,
        row.name,
        tuple(sorted(row.scopes)),
        _aware(row.created_at) or row.created_at,
        _aware(row.last_used_at),
        _aware(row.revoked_at),
        _rate_limit(row),
    )


class CredentialStore:
    """Creates, finds and revokes API keys, and creates and finds users."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], pepper: bytes) -> None:
        self.sessions = sessions
        self._pepper = pepper

    # -- API keys ------------------------------------------------------------------------------

    async def create_key(
        self, name: str, scopes: Iterable[str], rate_limit: RateLimit | None = None
    ) -> CreatedKey:
        """A new key; `rate_limit` None gives it the service's default limit."""
        new = generate_api_key()
        row = ApiKey(
            key_id=new.key_id,
            name=name,
            key_hash=hash_api_key(self._pepper, new.key),
            scopes=sorted(set(scopes)),
            rate_limit_per_second=rate_limit.per_second if rate_limit else None,
            rate_limit_burst=rate_limit.burst if rate_limit else None,
        )
        async with self.sessions() as session:
            session.add(row)
            try:
                await session.commit()
            except IntegrityError:
                raise CredentialConflict(f"an API key named {name!r} exists already") from None
            return CreatedKey(_info(row), new.key)

    async def find_key(self, key_id: str) -> StoredKey | None:
        async with self.sessions() as session:
            row = await session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
        if row is None:
            return None
        return StoredKey(
            row.key_id,
            row.name,
            row.key_hash,
            frozenset(row.scopes),
            row.revoked_at is not None,
            _rate_limit(row),
        )

    async def list_keys(self) -> list[KeyInfo]:
        async with self.sessions() as session:
            rows = await session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))
            return [_info(row) for row in rows]

    async def key_named(self, name: str) -> KeyInfo | None:
        async with self.sessions() as session:
            row = await session.scalar(select(ApiKey).where(ApiKey.name == name))
            return _info(row) if row else None

    async def revoke_key(self, name_or_id: str) -> KeyInfo | None:
        """Revoke the key with this name or key id; None if there is none. Idempotent."""
        async with self.sessions() as session:
            row = await session.scalar(
                select(ApiKey).where(or_(ApiKey.name == name_or_id, ApiKey.key_id == name_or_id))
            )
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
                await session.commit()
            return _info(row)

    async def record_last_used(self, used: Mapping[str, datetime]) -> None:
        """Move `last_used_at` forward (never back) for each key id, in one transaction."""
        async with self.sessions() as session:
            for key_id, at in used.items():
                await session.execute(
                    update(ApiKey)
                    .where(ApiKey.key_id == key_id)
                    .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < at))
                    .values(last_used_at=at)
                )
            await session.commit()

    # -- users ---------------------------------------------------------------------------------

    async def create_user(self, username: str, password_hash: str, scopes: Iterable[str]) -> None:
        async with self.sessions() as session:
            session.add(
                User(
                    username=username,
                    password_hash=password_hash,
                    scopes=sorted(set(scopes)),
                    disabled=False,
                )
            )
            try:
                await session.commit()
            except IntegrityError:
                raise CredentialConflict(f"a user named {username!r} exists already") from None

    async def find_user(self, username: str) -> UserRecord | None:
        async with self.sessions() as session:
            row = await session.scalar(select(User).where(User.username == username))
        if row is None:
            return None
        return UserRecord(row.username, row.password_hash, frozenset(row.scopes), row.disabled)

    async def find_user_state(self, username: str) -> StoredUser | None:
        """What verifying a bearer token needs of its user (never the password hash)."""
        async with self.sessions() as session:
            row = (
                await session.execute(
                    select(User.scopes, User.disabled).where(User.username == username)
                )
            ).first()
        if row is None:
            return None
        return StoredUser(username, frozenset(row.scopes), bool(row.disabled))

    async def set_user_disabled(self, username: str, disabled: bool) -> bool:
        """Disable (or enable again) a user; False if there is none. Its tokens are refused
        (accepted) by running workers within their verified-credential cache's TTL."""
        async with self.sessions() as session:
            result = await session.execute(
                update(User).where(User.username == username).values(disabled=disabled)
            )
            await session.commit()
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def delete_user(self, username: str) -> bool:
        """Delete a user; False if there is none."""
        async with self.sessions() as session:
            result = await session.execute(delete(User).where(User.username == username))
            await session.commit()
        return bool(result.rowcount)  # type: ignore[attr-defined]
