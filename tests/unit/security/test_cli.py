"""`churn-mlops users` and `churn-mlops keys` against a real SQLite database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from churn_mlops.cli import app
from churn_mlops.db.engine import Database
from churn_mlops.security.api_keys import key_id_of, key_matches
from churn_mlops.security.principal import RateLimit
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


def test_keys_create_with_a_rate_limit_stores_it(env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        app,
        ["keys", "create", "--name", "crm", "--scope", "predict", "--rate-limit", "50000"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "a rate limit of 50000/s, burst 100000" in " ".join(result.output.split())
    key_id = key_id_of(result.stdout.strip().splitlines()[-1])
    assert key_id is not None
    stored = _store_call(env["CHURN_DATABASE_URL"], "find_key", key_id)
    assert stored.rate_limit == RateLimit(50_000.0, 100_000)  # type: ignore[attr-defined]
    listed = CliRunner().invoke(app, ["keys", "list"], env={**env, "COLUMNS": "200"})
    assert "50000/s, burst 100000" in listed.output


def test_keys_create_without_a_rate_limit_names_the_default(env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        app, ["keys", "create", "--name", "svc", "--scope", "predict"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "the default rate limit (20000/s, burst 40000)" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--burst", "10"], "give --rate-limit with it"),
        (["--rate-limit", "0"], "a rate limit is above 0"),
        (["--rate-limit", "10", "--burst", "0"], "a burst is at least 1"),
    ],
    ids=["burst-alone", "zero-rate", "zero-burst"],
)
def test_keys_create_refuses_a_bad_rate_limit(
    env: dict[str, str], options: list[str], message: str
) -> None:
    result = CliRunner().invoke(
        app, ["keys", "create", "--name", "svc", "--scope", "predict", *options], env=env
    )
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.parametrize(
    ("command", "disabled"), [("disable", True), ("enable", False), ("delete", None)]
)
def test_users_disable_enable_and_delete(
    env: dict[str, str], command: str, disabled: bool | None
) -> None:
    runner = CliRunner()
    created = runner.invoke(
        app,
        ["users", "create", "alice", "--scope", "read", "--password-stdin"],
        input="correct horse battery\n",
        env=env,
    )
    assert created.exit_code == 0, created.output
    result = runner.invoke(app, ["users", command, "alice"], env=env)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert said.startswith(f"{command.capitalize()}d user 'alice'")
    assert ("refuse its tokens within 10 s" in said) is (command != "enable")
    state = _store_call(env["CHURN_DATABASE_URL"], "find_user_state", "alice")
    if disabled is None:
        assert state is None
    else:
        assert state.disabled is disabled  # type: ignore[attr-defined]
    unknown = runner.invoke(app, ["users", command, "nobody"], env=env)
    assert unknown.exit_code == 1
    assert "no user is named 'nobody'" in unknown.output
