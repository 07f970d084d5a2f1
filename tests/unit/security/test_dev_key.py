from __future__ import annotations

import asyncio
import stat
from pathlib import Path

from churn_mlops.db import schema
from churn_mlops.db.engine import Database
from churn_mlops.security.api_keys import key_id_of
from churn_mlops.security.dev_key import development_key
from churn_mlops.security.services import pepper
from churn_mlops.security.store import CredentialStore
from churn_mlops.settings import Settings


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    options: dict[str, object] = {
        "environment": "development",
        "database_url": f"sqlite:///{tmp_path / 'churn.db'}",
        "dev_api_key_file": tmp_path / "var" / "dev-api-key",
        **overrides,
    }
    return Settings(**options)  # type: ignore[arg-type]


def _revoke(settings: Settings, key_id: str) -> None:
    async def revoke() -> None:
        database = Database.from_url(settings.database_url)
        try:
            await CredentialStore(database.sessions, pepper(settings)).revoke_key(key_id)
        finally:
            await database.dispose()

    asyncio.run(revoke())


def test_development_key_is_created_once_and_kept_private(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    schema.upgrade(settings.database_url)
    created = development_key(settings)
    again = development_key(settings)
    assert created is not None
    assert again == (created[0], False)
    assert created[1] is True
    assert settings.dev_api_key_file.read_text() == created[0] + "\n"
    assert stat.S_IMODE(settings.dev_api_key_file.stat().st_mode) == 0o600


def test_development_key_is_replaced_when_revoked(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    schema.upgrade(settings.database_url)
    first = development_key(settings)
    assert first is not None
    key_id = key_id_of(first[0])
    assert key_id is not None
    _revoke(settings, key_id)
    second = development_key(settings)
    assert second is not None
    assert second[1] is True
    assert second[0] != first[0]
    assert settings.dev_api_key_file.read_text().strip() == second[0]


def test_no_development_key_outside_development_or_without_auth(tmp_path: Path) -> None:
    assert development_key(_settings(tmp_path, environment="test")) is None
    assert development_key(_settings(tmp_path, auth_enabled=False)) is None
    assert development_key(_settings(tmp_path, database_url="")) is None
    assert not (tmp_path / "var" / "dev-api-key").exists()
