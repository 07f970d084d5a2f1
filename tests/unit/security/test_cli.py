"""`churn-mlops users` and `churn-mlops keys` against a real SQLite database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from churn_mlops.cli import app
from churn_mlops.db.engine import Database
from churn_mlops.security.api_keys import key_id_of, key_matches
from churn_mlops.security.store import CredentialStore
from tests.fixtures.security import SECURITY_ENV, TEST_PEPPER


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **SECURITY_ENV,
        "CHURN_ENVIRONMENT": "test",
        "CHURN_DATABASE_URL": f"sqlite:///{tmp_path / 'churn.db'}",
    }


def _store_call(url: str, name: str, *args: str) -> object:
    async def call() -> object:
        database = Database.from_url(url)
        try:
            store = CredentialStore(database.sessions, TEST_PEPPER.encode())
            return await getattr(store, name)(*args)
        finally:
            await database.dispose()

    return asyncio.run(call())


def test_keys_create_prints_the_key_as_its_last_line(env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        app, ["keys", "create", "--name", "svc", "--scope", "predict", "--scope", "read"], env=env
    )
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    key_id = key_id_of(key)
    assert key_id is not None
    stored = _store_call(env["CHURN_DATABASE_URL"], "find_key", key_id)
    assert stored is not None
    assert stored.scopes == {"predict", "read"}  # type: ignore[attr-defined]
    assert key_matches(TEST_PEPPER.encode(), key, stored.key_hash)  # type: ignore[attr-defined]
    assert key not in stored.key_hash  # type: ignore[attr-defined]


def test_keys_create_refuses_an_unknown_scope(env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        app, ["keys", "create", "--name", "svc", "--scope", "everything"], env=env
    )
    assert result.exit_code == 2
    assert "unknown scope 'everything'" in result.output


def test_keys_create_refuses_a_taken_name(env: dict[str, str]) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["keys", "create", "--name", "svc", "--scope", "read"], env=env)
    again = runner.invoke(app, ["keys", "create", "--name", "svc", "--scope", "read"], env=env)
    assert again.exit_code == 1
    assert "an API key named 'svc' exists already" in again.output


def test_keys_list_shows_keys_without_their_secrets(env: dict[str, str]) -> None:
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "--name", "svc", "--scope", "read"], env=env)
    key = created.stdout.strip().splitlines()[-1]
    listed = runner.invoke(app, ["keys", "list"], env={**env, "COLUMNS": "200"})
    assert listed.exit_code == 0
    assert f"{key_id_of(key)}" in listed.output
    assert "svc" in listed.output
    assert "never" in listed.output
    assert key not in listed.output
    assert "1 key(s)" in listed.output


@pytest.mark.parametrize("by", ["name", "id"])
def test_keys_revoke_by_name_or_id(env: dict[str, str], by: str) -> None:
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "--name", "svc", "--scope", "read"], env=env)
    key_id = key_id_of(created.stdout.strip().splitlines()[-1])
    assert key_id is not None
    revoked = runner.invoke(app, ["keys", "revoke", "svc" if by == "name" else key_id], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert f"Revoked API key 'svc' (id {key_id})" in revoked.output
    stored = _store_call(env["CHURN_DATABASE_URL"], "find_key", key_id)
    assert stored.revoked  # type: ignore[attr-defined]


def test_keys_revoke_of_an_unknown_key_fails(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["keys", "revoke", "nobody"], env=env)
    assert result.exit_code == 1
    assert "no API key is named or has the id 'nobody'" in result.output


def test_users_create_reads_the_password_from_stdin(env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        app,
        ["users", "create", "alice", "--scope", "read,predict", "--password-stdin"],
        input="correct horse battery\n",
        env=env,
    )
    assert result.exit_code == 0, result.output
    user = _store_call(env["CHURN_DATABASE_URL"], "find_user", "alice")
    assert user.scopes == {"read", "predict"}  # type: ignore[attr-defined]
    assert user.password_hash.startswith("$argon2id$")  # type: ignore[attr-defined]


def test_users_create_prompts_for_the_password_twice(env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        app,
        ["users", "create", "bob", "--scope", "read"],
        input="correct horse battery\ncorrect horse battery\n",
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "Password" in result.output


def test_users_create_refuses_a_short_password(env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        app,
        ["users", "create", "eve", "--scope", "read", "--password-stdin"],
        input="short\n",
        env=env,
    )
    assert result.exit_code == 1
    assert "at least 8 characters" in result.output
