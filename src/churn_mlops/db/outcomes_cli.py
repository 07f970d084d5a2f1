"""`churn-mlops outcomes import FILE.csv`: record many customers' outcomes at once.

The file has a header with the columns `customer_id`, `churned` and `observed_at` (any order;
other columns are ignored). `churned` is true/false, yes/no or 1/0; `observed_at` a date as
YYYY-MM-DD. A bad row is reported with its line and column and skipped; the others are
recorded, `--batch-rows` per transaction. Importing a file again changes nothing, so a fixed
file can simply be imported again.
"""

from __future__ import annotations

import asyncio
import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, TextIO, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from churn_mlops.db.outcomes import (
    DEFAULT_BATCH_ROWS,
    ImportCounts,
    OutcomeRow,
    import_outcomes,
    latest_observable_date,
)
from churn_mlops.settings import Settings

COLUMNS = ("customer_id", "churned", "observed_at")
_CHURNED = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_CUSTOMER_ID = 64
_T = TypeVar("_T")

outcomes_app = typer.Typer(
    help="Record what became of customers: the outcomes live model quality is measured against.",
    no_args_is_help=True,
)
console = Console(stderr=True)


class MissingColumns(ValueError):
    """The header lacks a column the import needs."""


@dataclass(frozen=True)
class RowError:
    """Why one line of the file was skipped."""

    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.reason}"


def _customer_id(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("is empty")
    if len(value) > MAX_CUSTOMER_ID or _CONTROL.search(value):
        raise ValueError(f"is not a customer id (at most {MAX_CUSTOMER_ID} printable characters)")
    return value


def _churned(text: str) -> bool:
    value = _CHURNED.get(text.strip().lower())
    if value is None:
        raise ValueError(f"{text!r} is not true/false, yes/no or 1/0")
    return value


def _observed_at(text: str) -> date:
    value = text.strip()
    try:
        if _ISO_DATE.fullmatch(value) is None:
            raise ValueError
        observed = date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a date as YYYY-MM-DD") from None
    if observed > latest_observable_date():
        raise ValueError(f"{value} is in the future")
    return observed


class _BadValue(ValueError):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


def _cell(record: dict[str, str | None], column: str, parse: Callable[[str], _T]) -> _T:
    text = record.get(column)
    try:
        if text is None:  # a line with fewer fields than the header
            raise ValueError("is missing")
        return parse(text)
    except ValueError as error:
        raise _BadValue(column, str(error)) from None


def read_outcomes_csv(handle: TextIO, on_error: Callable[[RowError], None]) -> Iterator[OutcomeRow]:
    """The outcomes of a CSV file, in order; each bad row goes to `on_error` instead.
    MissingColumns, before any row, if the header lacks one of COLUMNS."""
    reader = csv.DictReader(handle)
    missing = [name for name in COLUMNS if name not in (reader.fieldnames or ())]
    if missing:
        found = ", ".join(reader.fieldnames or ()) or "nothing"
        raise MissingColumns(f"missing column(s) {', '.join(missing)}; the header has {found}")
    for record in reader:
        try:
            # Keyword order is evaluation order: the first bad column, left to right, is named.
            row = OutcomeRow(
                customer_id=_cell(record, "customer_id", _customer_id),
                churned=_cell(record, "churned", _churned),
                observed_at=_cell(record, "observed_at", _observed_at),
            )
        except _BadValue as bad:
            on_error(RowError(reader.line_num, bad.column, bad.reason))
            continue
        yield row


def summary_table(counts: ImportCounts) -> Table:
    table = Table("rows", "count", title="Outcomes imported")
    for label, value in (
        ("inserted", counts.inserted),
        ("updated (another answer for that date)", counts.updated),
        ("unchanged (already recorded)", counts.unchanged),
        ("unknown customer (skipped)", counts.unknown_customer),
        ("invalid (skipped)", counts.invalid),
        ("total", counts.total),
    ):
        table.add_row(label, f"{value:,}")
    return table


def _data_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return max(sum(1 for _ in handle) - 1, 0)


async def import_file(
    path: Path, url: str, batch_rows: int, show_errors: int
) -> tuple[ImportCounts, list[RowError]]:
    """What `outcomes import` does, with its progress bar and error lines."""
    from churn_mlops.db import schema
    from churn_mlops.db.engine import Database

    errors: list[RowError] = []
    database = Database.from_url(url)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    try:
        await schema.ensure_schema_current(database.engine)
        with (
            path.open(newline="", encoding="utf-8-sig") as handle,
            Progress(*columns, TimeRemainingColumn(), console=console) as progress,
        ):
            task = progress.add_task("Outcomes", total=_data_lines(path))

            def skipped(error: RowError) -> None:
                errors.append(error)
                progress.advance(task)
                if len(errors) <= show_errors:
                    progress.console.print(f"[yellow]{error}[/]", highlight=False)

            counts = await import_outcomes(
                database,
                read_outcomes_csv(handle, skipped),
                batch_rows=batch_rows,
                progress=lambda rows: progress.advance(task, rows),
            )
    finally:
        await database.dispose()
    counts.invalid = len(errors)
    return counts, errors


@outcomes_app.command("import")
def import_command(
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="The CSV file."),
    ],
    batch_rows: Annotated[
        int, typer.Option(min=1, help="Rows per statement and transaction.")
    ] = DEFAULT_BATCH_ROWS,
    show_errors: Annotated[int, typer.Option(min=0, help="Print at most this many bad rows.")] = 20,
    url: Annotated[
        str | None,
        typer.Option("--url", help="Database URL; default: CHURN_DATABASE_URL."),
    ] = None,
) -> None:
    """Record the outcomes of FILE.csv (columns customer_id, churned, observed_at). Exits 1
    when a row was invalid (the valid ones are recorded), 2 when the file cannot be read."""
    from churn_mlops.db.schema import SchemaNotCurrent

    try:
        counts, errors = asyncio.run(
            import_file(file, url or Settings().database_url, batch_rows, show_errors)
        )
    except (MissingColumns, SchemaNotCurrent, UnicodeDecodeError, csv.Error) as error:
        console.print(f"[red]{file}: {error}[/]", highlight=False)
        raise typer.Exit(2) from None
    Console().print(summary_table(counts))
    if errors:
        more = len(errors) - show_errors
        tail = f" ({more} more not shown)" if more > 0 else ""
        console.print(f"[red]{len(errors)} invalid row(s) skipped{tail}[/]", highlight=False)
        raise typer.Exit(1)
