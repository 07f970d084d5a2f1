"""The development API key `churn-mlops serve` creates on first run, so the quickstart works."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from churn_mlops.db.engine import Database
from churn_mlops.security.api_keys import key_id_of, key_matches
from churn_mlops.security.principal import ALL_SCOPES
from churn_mlops.security.services import pepper
from churn_mlops.security.store import CredentialStore
from churn_mlops.settings import Settings

DEV_KEY_NAME = "development"


async def _valid(store: CredentialStore, key: str, key_pepper: bytes) -> bool:
    key_id = key_id_of(key)
    stored = await store.find_key(key_id) if key_id else None
    if stored is None or stored.revoked:
        return False
    return key_matches(key_pepper, key, stored.key_hash)


async def _unused_name(store: CredentialStore) -> str:
    name, number = DEV_KEY_NAME, 1
    while await store.key_named(name) is not None:
        number += 1
        name = f"{DEV_KEY_NAME}-{number}"
    return name


def write_secret_file(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600), also when it existed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    path.chmod(0o600)


async def ensure_dev_key(settings: Settings) -> tuple[str, bool]:
    """The development key in `settings.dev_api_key_file` if it is still valid, else a new one
    with every scope written there; and whether it was created now."""
    key_pepper = pepper(settings)
    path = settings.dev_api_key_file
    database = Database.from_url(settings.database_url)
    try:
        store = CredentialStore(database.sessions, key_pepper)
        if path.exists():
            key = path.read_text().strip()
            if await _valid(store, key, key_pepper):
                return key, False
        created = await store.create_key(await _unused_name(store), sorted(ALL_SCOPES))
    finally:
        await database.dispose()
    write_secret_file(path, created.key + "\n")
    return created.key, True


def development_key(settings: Settings) -> tuple[str, bool] | None:
    """`ensure_dev_key` when it applies: development mode, auth on, a database configured."""
    if settings.environment != "development" or not settings.auth_enabled:
        return None
    if not settings.database_url:
        return None
    return asyncio.run(ensure_dev_key(settings))
