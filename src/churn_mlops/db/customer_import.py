"""`churn-mlops customers import FILE`: customers from a CSV or Parquet file, validated against
the served model's feature schema, upserted by the schema's id column.

Every row is checked before anything is written: a cell is read by its feature's kind (a CSV
cell is text), then the row goes through the schema's request model, the same validation as
`POST /customers` and `POST /predict`, so a file is refused for exactly what a request would be.
An error names the file's line (or a Parquet file's row) and column. By default one bad row
refuses the whole file; `skip_invalid` writes the good rows and reports the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from churn_mlops.core.request_models import CUSTOMER_ID_MAX_LENGTH, request_models
from churn_mlops.core.schema import FeatureSchema, FeatureSpec
from churn_mlops.data.tabular import DatasetError, RawTable, read_table
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Customer

Progress = Callable[[int], None]
BATCH_ROWS = 1000
_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}


@dataclass(frozen=True)
class RowError:
    """Why one cell (or a row's id) was refused."""

    line: str
    column: str
    reason: str

    def __str__(self) -> str:
        return f"{self.line}, column {self.column}: {self.reason}"


class ImportRefused(ValueError):
    """The file has invalid rows, and none was written."""

    def __init__(self, path: Path, errors: list[RowError]) -> None:
        shown = "\n".join(f"  {error}" for error in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(
            f"{path}: {len(errors)} invalid cells; nothing was written "
            f"(--skip-invalid writes the valid rows):\n{shown}{more}"
        )
        self.errors = errors


@dataclass
class ValidatedRows:
    """The rows that passed, as (external id, features), and the refusals of the others."""

    rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    invalid_rows: int = 0


@dataclass(frozen=True)
class ImportResult:
    written: int
    created: int
    skipped: int
    errors: list[RowError]
    total: int
    """Customers stored after the import."""


def _cell(spec: FeatureSpec, cell: Any) -> Any:
    """A CSV cell's text as the JSON value its feature takes; what does not read as one is
    left for the request model to refuse with its own message."""
    if not isinstance(cell, str):
        if spec.kind == "number" and isinstance(cell, int) and not isinstance(cell, bool):
            return float(cell)
        return cell
    if spec.kind == "integer":
        try:
            return int(cell)
        except ValueError:
            try:
                number = float(cell)
            except ValueError:
                return cell
            return int(number) if number.is_integer() else number
    if spec.kind == "number":
        try:
            return float(cell)
        except ValueError:
            return cell
    if spec.kind == "boolean" and cell.lower() in _TRUE | _FALSE:
        return cell.lower() in _TRUE
    return cell


def id_column(schema: FeatureSchema, given: str | None) -> str:
    column = given or schema.id_column
    if column is None:
        raise DatasetError(
            "the served model's schema has no id column: name the file's id column with --id"
        )
    return column


def validate_table(table: RawTable, schema: FeatureSchema, ids: str) -> ValidatedRows:
    """Every row of `table` checked against `schema`; the ids are `ids`'s cells."""
    table.require([ids, *(spec.column for spec in schema.features)])
    model = request_models(schema).features
    specs = schema.features
    cells = [table.columns[spec.column] for spec in specs]
    by_name = {spec.name: spec.column for spec in specs}
    first_line: dict[str, str] = {}
    result = ValidatedRows()
    for index, external_id in enumerate(table.columns[ids]):
        line = table.line(index)
        errors = _id_errors(external_id, line, ids, first_line)
        values = {
            spec.name: _cell(spec, column[index]) for spec, column in zip(specs, cells, strict=True)
        }
        try:
            features = model.model_validate(values).model_dump()
        except ValidationError as error:
            for problem in error.errors(include_input=False, include_url=False):
                name = str(problem["loc"][0]) if problem["loc"] else ""
                errors.append(RowError(line, by_name.get(name, name), problem["msg"]))
        if errors:
            result.errors.extend(errors)
            result.invalid_rows += 1
        else:
            result.rows.append((str(external_id), features))
    return result


def _id_errors(
    external_id: Any, line: str, column: str, first_line: dict[str, str]
) -> list[RowError]:
    text = "" if external_id is None else str(external_id)
    if not text:
        return [RowError(line, column, "the customer's id is empty")]
    if len(text) > CUSTOMER_ID_MAX_LENGTH or any(ord(c) < 32 or ord(c) == 127 for c in text):
        return [RowError(line, column, "an id is 1 to 64 characters without control characters")]
    if text in first_line:
        return [RowError(line, column, f"id {text!r} is also on {first_line[text]}")]
    first_line[text] = line
    return []


async def _upsert(
    connection: AsyncConnection, rows: list[tuple[str, dict[str, Any]]], sha256: str
) -> None:
    table = Customer.__table__
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    updated = {
        "features": statement.excluded.features,
        "schema_sha256": statement.excluded.schema_sha256,
        "updated_at": func.now(),
    }
    await connection.execute(
        statement.on_conflict_do_update(index_elements=["external_id"], set_=updated),
        [
            {"external_id": external_id, "features": features, "schema_sha256": sha256}
            for external_id, features in rows
        ],
    )


async def _count(connection: AsyncConnection) -> int:
    return int(await connection.scalar(select(func.count()).select_from(Customer)) or 0)


async def import_customers(
    database: Database,
    path: Path,
    schema: FeatureSchema,
    *,
    id_name: str | None = None,
    skip_invalid: bool = False,
    progress: Progress | None = None,
    validated: Progress | None = None,
) -> ImportResult:
    """Validate every row of the file, then upsert them in one transaction; ImportRefused
    (nothing written) if a row is invalid and not `skip_invalid`; DatasetError if the file
    cannot be read or lacks a column. `validated` hears how many rows will be written,
    `progress` how many were just written."""
    table = read_table(path)
    checked = validate_table(table, schema, id_column(schema, id_name))
    if checked.errors and not skip_invalid:
        raise ImportRefused(path, checked.errors)
    if validated is not None:
        validated(len(checked.rows))
    async with database.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        before = await _count(connection)
        for start in range(0, len(checked.rows), BATCH_ROWS):
            chunk = checked.rows[start : start + BATCH_ROWS]
            await _upsert(connection, chunk, schema.sha256)
            if progress is not None:
                progress(len(chunk))
        total = await _count(connection)
    return ImportResult(
        written=len(checked.rows),
        created=total - before,
        skipped=checked.invalid_rows,
        errors=checked.errors,
        total=total,
    )
