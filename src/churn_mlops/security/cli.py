"""`churn-mlops users` and `churn-mlops keys`: credentials in the service's database."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from churn_mlops.db import schema
from churn_mlops.db.engine import Database
from churn_mlops.security.passwords import PasswordVerifier
from churn_mlops.security.principal import RateLimit, parse_scopes
from churn_mlops.security.services import pepper
from churn_mlops.security.store import CredentialConflict, CredentialStore
from churn_mlops.settings import Settings

T = TypeVar("T")
MIN_PASSWORD_LENGTH = 8

users_app = typer.Typer(
    help="Manage users, who log in at POST /auth/login for bearer tokens.",
    no_args_is_help=True,
)
keys_app = typer.Typer(
    help="Manage API keys (X-API-Key) for services calling the API.",
    no_args_is_help=True,
)
console = Console(stderr=True)

ScopeOption = Annotated[
    list[str],
    typer.Option(
        "--scope",
        help="predict, read or admin; repeat the option or separate with commas.",
    ),
]


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]{message}[/]")
    return typer.Exit(1)


def _scopes(values: list[str]) -> list[str]:
    try:
        scopes = parse_scopes(values)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--scope") from None
    if not scopes:
        raise typer.BadParameter("give at least one scope", param_hint="--scope")
    return sorted(scopes)


def _ready_database(settings: Settings) -> str:
    """The database URL, migrated to head (outside production, where that is `db upgrade`'s)."""
    url = settings.database_url
    if not url:
        raise _fail("CHURN_DATABASE_URL is empty: credentials live in the database")
    current = asyncio.run(schema.current_revision_of(url))
    if current != schema.head_revisions():
        if settings.environment == "production":
            raise _fail("the database schema is not current: run `churn-mlops db upgrade` first")
        console.print("Migrating the database to the current schema")
        schema.upgrade(url)
    return url


def _with_store(settings: Settings, work: Callable[[CredentialStore], Awaitable[T]]) -> T:
    url = _ready_database(settings)

    async def run() -> T:
        database = Database.from_url(url)
        try:
            return await work(CredentialStore(database.sessions, pepper(settings)))
        finally:
            await database.dispose()

    return asyncio.run(run())


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise _fail(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    return password


@users_app.command("create")
def create_user(
    name: Annotated[str, typer.Argument(help="The username to log in with.")],
    scope: ScopeOption,
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from the first line of stdin (no prompt).")
    ] = False,
) -> None:
    """Create a user who can log in for a bearer token with these scopes."""
    settings = Settings()
    scopes = _scopes(scope)
    password = _read_password(password_stdin)
    with console.status("hashing the password (argon2id)"):
        password_hash = PasswordVerifier().hash(password)
    try:
        _with_store(settings, lambda store: store.create_user(name, password_hash, scopes))
    except CredentialConflict as error:
        raise _fail(str(error)) from None
    console.print(f"Created user {name!r} with scopes {', '.join(scopes)}")


def _rate_limit(per_second: float | None, burst: int | None) -> RateLimit | None:
    if per_second is None:
        if burst is not None:
            raise typer.BadParameter("give --rate-limit with it", param_hint="--burst")
        return None
    try:
        return RateLimit.of(per_second, burst)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--rate-limit") from None


def _describe(limit: RateLimit | None, settings: Settings) -> str:
    if limit is None:
        return (
            f"the default rate limit ({settings.rate_limit_per_second:g}/s, burst "
            f"{settings.rate_limit_burst})"
        )
    return f"a rate limit of {limit.per_second:g}/s, burst {limit.burst}"


def _change_user(
    name: str, change: Callable[[CredentialStore], Awaitable[bool]], done: str, revokes: bool
) -> None:
    settings = Settings()
    if not _with_store(settings, change):
        raise _fail(f"no user is named {name!r}")
    ttl = settings.auth_cache_ttl_seconds
    note = f"; running workers refuse its tokens within {ttl:g} s" if revokes else ""
    console.print(f"{done} user {name!r}{note}")


@users_app.command("disable")
def disable_user(name: Annotated[str, typer.Argument(help="The username.")]) -> None:
    """Disable a user: no login, and its tokens are refused within CHURN_AUTH_CACHE_TTL_SECONDS."""
    _change_user(name, lambda store: store.set_user_disabled(name, True), "Disabled", True)


@users_app.command("enable")
def enable_user(name: Annotated[str, typer.Argument(help="The username.")]) -> None:
    """Enable a disabled user again."""
    _change_user(name, lambda store: store.set_user_disabled(name, False), "Enabled", False)


@users_app.command("delete")
def delete_user(name: Annotated[str, typer.Argument(help="The username.")]) -> None:
    """Delete a user; its tokens are refused within CHURN_AUTH_CACHE_TTL_SECONDS."""
    _change_user(name, lambda store: store.delete_user(name), "Deleted", True)


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Option("--name", help="A unique name for the key's holder.")],
    scope: ScopeOption,
    rate_limit: Annotated[
        float | None,
        typer.Option(
            "--rate-limit",
            help="The key's own requests a second (default: CHURN_RATE_LIMIT_PER_SECOND).",
        ),
    ] = None,
    burst: Annotated[
        int | None,
        typer.Option(help="Requests at once after being idle; default twice --rate-limit."),
    ] = None,
) -> None:
    """Create an API key; the key is printed once, as the last line of output (on stdout)."""
    settings = Settings()
    scopes = _scopes(scope)
    limit = _rate_limit(rate_limit, burst)
    try:
        created = _with_store(settings, lambda store: store.create_key(name, scopes, limit))
    except CredentialConflict as error:
        raise _fail(str(error)) from None
    console.print(
        f"Created API key {created.info.name!r} (id {created.info.key_id}) with scopes "
        f"{', '.join(scopes)} and {_describe(limit, settings)}. It is shown only now; send it "
        "as the X-API-Key header:"
    )
    sys.stdout.write(created.key + "\n")
    sys.stdout.flush()


@keys_app.command("list")
def list_keys() -> None:
    """List API keys: id, name, scopes, rate limit, created, last used, revoked (never the
    keys)."""
    keys = _with_store(Settings(), lambda store: store.list_keys())
    table = Table("id", "name", "scopes", "rate limit", "created", "last used", "revoked")
    for key in keys:
        limit = key.rate_limit
        table.add_row(
            key.key_id,
            key.name,
            ",".join(key.scopes),
            f"{limit.per_second:g}/s, burst {limit.burst}" if limit else "default",
            f"{key.created_at:%Y-%m-%d %H:%M:%S}",
            f"{key.last_used_at:%Y-%m-%d %H:%M:%S}" if key.last_used_at else "never",
            f"{key.revoked_at:%Y-%m-%d %H:%M:%S}" if key.revoked_at else "",
        )
    Console().print(table)
    console.print(f"{len(keys)} key(s)")


@keys_app.command("revoke")
def revoke_key(
    name_or_id: Annotated[str, typer.Argument(help="The key's name or its id.")],
) -> None:
    """Revoke an API key. Running workers stop accepting it within CHURN_AUTH_CACHE_TTL_SECONDS."""
    settings = Settings()
    info = _with_store(settings, lambda store: store.revoke_key(name_or_id))
    if info is None:
        raise _fail(f"no API key is named or has the id {name_or_id!r}")
    console.print(
        f"Revoked API key {info.name!r} (id {info.key_id}); workers that verified it stop "
        f"accepting it within {settings.auth_cache_ttl_seconds:g} s"
    )
