"""`churn-mlops db`: migrations and seeding."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from churn_mlops.db import schema
from churn_mlops.settings import Settings

if TYPE_CHECKING:
    from churn_mlops.data import Dataset

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


@db_app.command()
def seed(
    synthetic: Annotated[
        int,
        typer.Option(min=0, help="Also make sure synthetic customers SYN-0..N-1 exist."),
    ] = 0,
    predictions: Annotated[
        int,
        typer.Option(min=0, help="Make sure at least this many (synthetic) predictions exist."),
    ] = 0,
    dataset: Annotated[
        bool, typer.Option(help="Upsert the dataset's customers (on external_id).")
    ] = True,
    data: Annotated[
        Path | None,
        typer.Option(
            help="The dataset: the served model's training data (CSV or Parquet), read by its "
            "schema; default: the shipped Telco example."
        ),
    ] = None,
    model_dir: Annotated[
        Path | None,
        typer.Option(help="With --data: the model whose schema reads it; default: the served one."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Rows per COPY (PostgreSQL) or insert batch (SQLite).")
    ] = 50_000,
    seed_value: Annotated[int, typer.Option("--seed", help="Seed of the synthetic data.")] = 42,
    url: UrlOption = None,
) -> None:
    """Load customers: a dataset (the shipped one, or --data), and optionally synthetic
    customers drawn from it and predictions.

    Idempotent: the dataset is upserted; synthetic customers and predictions are topped up to
    the numbers asked for. The schema must be current (`churn-mlops db upgrade`).
    """
    rows = None if data is None else _served_dataset(data, model_dir)
    asyncio.run(
        seed_with_progress(
            _url(url), dataset, synthetic, predictions, batch_size, seed_value, rows=rows
        )
    )


def _served_dataset(path: Path, model_dir: Path | None) -> Dataset:
    """`path` read by the served model's schema (its training data has every feature, its id
    and its target)."""
    from churn_mlops.data.dataset import parse_table
    from churn_mlops.data.tabular import DatasetError, read_table
    from churn_mlops.db.customers_cli import served_schema

    schema = served_schema(Settings(), model_dir)
    try:
        # Stored with the served schema itself (parsing takes its example from the file).
        return dataclasses.replace(parse_table(read_table(path), schema), schema=schema)
    except DatasetError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None


async def seed_with_progress(
    url: str,
    dataset: bool,
    synthetic: int,
    predictions: int,
    batch_size: int = 50_000,
    seed_value: int = 42,
    rows: Dataset | None = None,
) -> tuple[int, int]:
    """What `churn-mlops db seed` does, with its progress bars; (customers, predictions) after."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from churn_mlops.data import load_telco_csv
    from churn_mlops.db.engine import Database
    from churn_mlops.db.seed import (
        seed_dataset,
        seed_synthetic_customers,
        seed_synthetic_predictions,
    )

    database = Database.from_url(url)
    try:
        try:
            await schema.ensure_schema_current(database.engine)
        except schema.SchemaNotCurrent as error:
            console.print(f"[red]{error}[/]")
            raise typer.Exit(1) from None
        telco = load_telco_csv() if rows is None else rows
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console) as progress:
            if dataset:
                task = progress.add_task("Dataset customers", total=len(telco))
                await seed_dataset(
                    database,
                    telco,
                    batch_size=min(batch_size, 1000),
                    progress=lambda n: progress.advance(task, n),
                )
            if synthetic:
                task = progress.add_task("Synthetic customers", total=synthetic)
                done = await seed_synthetic_customers(
                    database,
                    telco,
                    synthetic,
                    seed=seed_value,
                    batch_size=batch_size,
                    progress=lambda n: progress.advance(task, n),
                )
                console.print(f"synthetic customers: {done.written:,} added")
            if predictions:
                task = progress.add_task("Predictions", total=predictions)
                done = await seed_synthetic_predictions(
                    database,
                    predictions,
                    seed=seed_value,
                    batch_size=batch_size,
                    progress=lambda n: progress.advance(task, n),
                )
                console.print(f"predictions: {done.written:,} added, {done.total:,} in all")
        counts = await _counts(database)
        console.print(f"{_shown(url)}: {counts[0]:,} customers, {counts[1]:,} predictions")
        return counts
    finally:
        await database.dispose()


async def _counts(database: Any) -> tuple[int, int]:
    from sqlalchemy import func, select

    from churn_mlops.db.models import Customer, Prediction

    async with database.sessions() as session:
        customers = await session.scalar(select(func.count()).select_from(Customer))
        predictions = await session.scalar(select(func.count()).select_from(Prediction))
    return int(customers or 0), int(predictions or 0)


def upgrade_before_serving(url: str) -> None:
    """What `churn-mlops serve` runs before its workers start: migrate to head, so a fresh
    checkout serves with no setup. A database that does not answer is reported, not fatal:
    predictions never need it (the workers check the schema again when they start)."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    try:
        schema.upgrade(url)
    except (OperationalError, InterfaceError, OSError) as error:
        console.print(
            f"[yellow]database {_shown(url)} does not answer ({error.__class__.__name__}): "
            "serving predictions without it[/]"
        )
        return
    console.print(f"Database {_shown(url)} is at {', '.join(schema.head_revisions())}")
