"""`churn-mlops customers`: bulk import of customers, validated against the served model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from churn_mlops.core.schema import FeatureSchema
from churn_mlops.settings import Settings

customers_app = typer.Typer(
    help="Manage stored customers: `import` a CSV or Parquet file.", no_args_is_help=True
)
console = Console(stderr=True)

ModelDirOption = Annotated[
    Path | None,
    typer.Option(
        help="The model whose schema validates the rows; default: the one `serve` serves "
        "(CHURN_MODEL_DIR if set, else the registry's champion)."
    ),
]


def served_model_dir(settings: Settings, model_dir: Path | None = None) -> Path:
    """The artifact `churn-mlops serve` would serve: `model_dir`, CHURN_MODEL_DIR, or the
    registry's champion (else the default model directory)."""
    if model_dir is not None:
        return model_dir
    if "model_dir" in settings.model_fields_set:
        return settings.model_dir
    from churn_mlops.model.registry import CHAMPION, open_registry

    champion = open_registry(settings).resolve(CHAMPION)
    return settings.model_dir if champion is None else champion.path


def served_schema(settings: Settings, model_dir: Path | None = None) -> FeatureSchema:
    """The feature schema of the served model (see `served_model_dir`); exits if there is none."""
    from churn_mlops.model.artifact import ModelArtifact

    directory = served_model_dir(settings, model_dir)
    try:
        return ModelArtifact.load(directory).schema
    except Exception as error:  # a missing or unreadable artifact: say which and why
        console.print(
            f"[red]no model to validate against in {directory}: {error}; train one "
            "(`churn-mlops train`) or pass --model-dir[/]"
        )
        raise typer.Exit(1) from None


@customers_app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(help="A CSV or Parquet (.parquet, .pq) file.")],
    model_dir: ModelDirOption = None,
    id_name: Annotated[
        str | None,
        typer.Option("--id", help="The file's id column; default: the schema's id column."),
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(help="Write the valid rows and report the invalid ones, instead of none."),
    ] = False,
    url: Annotated[
        str | None, typer.Option("--url", help="Database URL; default: CHURN_DATABASE_URL.")
    ] = None,
) -> None:
    """Validate every row against the served model's feature schema, then upsert the customers
    by the id column. One invalid row refuses the file (its line and column are named) unless
    --skip-invalid."""
    settings = Settings()
    schema = served_schema(settings, model_dir)
    asyncio.run(_import(url or settings.database_url, file, schema, id_name, skip_invalid))


async def _import(
    url: str, file: Path, schema: FeatureSchema, id_name: str | None, skip_invalid: bool
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from churn_mlops.data.tabular import DatasetError
    from churn_mlops.db import schema as db_schema
    from churn_mlops.db.customer_import import ImportRefused, import_customers
    from churn_mlops.db.engine import Database

    database = Database.from_url(url)
    try:
        try:
            await db_schema.ensure_schema_current(database.engine)
        except db_schema.SchemaNotCurrent as error:
            console.print(f"[red]{error}[/]")
            raise typer.Exit(1) from None
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(f"Importing {file.name}", total=None)
            try:
                result = await import_customers(
                    database,
                    file,
                    schema,
                    id_name=id_name,
                    skip_invalid=skip_invalid,
                    progress=lambda n: progress.advance(task, n),
                    validated=lambda n: progress.update(task, total=n),
                )
            except (ImportRefused, DatasetError) as error:
                progress.stop()
                console.print(str(error), markup=False, highlight=False)
                raise typer.Exit(1) from None
        for refused in result.errors:
            console.print(f"skipped {refused}", markup=False, highlight=False)
        skipped = f", {result.skipped:,} invalid rows skipped" if result.skipped else ""
        console.print(
            f"{result.written:,} customers imported ({result.created:,} new){skipped}; "
            f"{result.total:,} stored"
        )
    finally:
        await database.dispose()
