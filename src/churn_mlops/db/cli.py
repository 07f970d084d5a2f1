"""`churn-mlops db`: migrations and seeding."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from churn_mlops.db import schema
from churn_mlops.settings import Settings

db_app = typer.Typer(
    help="Manage the database: migrations (`upgrade`, `downgrade`, `current`) and `seed`.",
    no_args_is_help=True,
)
console = Console(stderr=True)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", help="Database URL; default: CHURN_DATABASE_URL (sqlite:///var/churn.db)."
    ),
]


def _url(url: str | None) -> str:
    return url or Settings().database_url


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url.replace("postgres://", "postgresql://", 1)).render_as_string(
        hide_password=True
    )


@db_app.command()
def upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    url: UrlOption = None,
) -> None:
    """Migrate the database up to REVISION (default: the latest)."""
    target = _url(url)
    schema.upgrade(target, revision)
    current = asyncio.run(schema.current_revision_of(target))
    console.print(f"{_shown(target)} is at {', '.join(current) or 'base'}")


@db_app.command()
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision; `base` drops every table.")],
    url: UrlOption = None,
) -> None:
    """Migrate the database down to REVISION."""
    target = _url(url)
    schema.downgrade(target, revision)
    current = asyncio.run(schema.current_revision_of(target))
    console.print(f"{_shown(target)} is at {', '.join(current) or 'base'}")


@db_app.command()
def current(url: UrlOption = None) -> None:
    """Print the database's revision and the revision the code needs."""
    target = _url(url)
    have = asyncio.run(schema.current_revision_of(target))
    needed = schema.head_revisions()
    state = "current" if have == needed else "NOT current: run `churn-mlops db upgrade`"
    typer.echo(f"{', '.join(have) or 'base'} (code needs {', '.join(needed)}; {state})")
