"""Training data as typed columns, read by its feature schema, without pandas.

`load_dataset(path, target=..., schema_file=...)` infers the schema (`schema_inference.py`),
then parses every cell by it: a categorical as its text, an integer as int, a number as float,
a boolean as bool, a missing cell as None where the feature is nullable. A value the schema
refuses raises DatasetError naming the line and the column.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from churn_mlops.core.schema import FeatureSchema, FeatureSpec, SchemaError
from churn_mlops.data.schema_inference import infer_schema, read_schema_file
from churn_mlops.data.tabular import DatasetError, RawTable, read_table

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


@dataclass(frozen=True)
class Dataset:
    """Customers as columns: one list per feature, in the schema's order."""

    customer_ids: list[str]
    columns: dict[str, list[Any]]
    churned: list[bool]
    sha256: str
    schema: FeatureSchema

    def __len__(self) -> int:
        return len(self.customer_ids)

    def feature_rows(self) -> Iterator[dict[str, Any]]:
        """Each customer as the `features` object of a prediction request."""
        names = self.schema.names
        for i in range(len(self)):
            yield {name: self.columns[name][i] for name in names}

    def subset(self, indices: Sequence[int]) -> Dataset:
        """The customers at `indices`, in that order."""
        return Dataset(
            customer_ids=[self.customer_ids[i] for i in indices],
            columns={name: [values[i] for i in indices] for name, values in self.columns.items()},
            churned=[self.churned[i] for i in indices],
            sha256=self.sha256,
            schema=self.schema,
        )


def _parse_cell(spec: FeatureSpec, cell: Any, where: str) -> Any:
    column = spec.column
    if cell is None:
        if spec.nullable:
            return None
        raise DatasetError(f"{where}: {column} is empty")
    if spec.kind == "categorical":
        value = str(cell)
        if value not in spec.values and spec.unknown == "refuse":
            raise DatasetError(f"{where}: {column}={value!r} is not one of the schema's values")
        return value
    if spec.kind == "boolean":
        return _parse_boolean(column, cell, where)
    if isinstance(cell, bool):
        raise DatasetError(f"{where}: {column}={cell!r} is not a number")
    try:
        number = float(cell)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: {column}={cell!r} is not a number") from None
    if not math.isfinite(number) or not _within(spec, number):
        raise DatasetError(
            f"{where}: {column}={cell!r} is out of range [{spec.minimum}, {spec.maximum}]"
        )
    if spec.kind == "integer":
        if not number.is_integer():
            raise DatasetError(f"{where}: {column}={cell!r} is not an integer")
        return int(number)
    return number


def _parse_boolean(column: str, cell: Any, where: str) -> bool:
    if isinstance(cell, bool):
        return cell
    text = str(cell).lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise DatasetError(f"{where}: {column}={cell!r} is not true or false")


def _within(spec: FeatureSpec, number: float) -> bool:
    low, high = spec.minimum, spec.maximum
    return (low is None or number >= low) and (high is None or number <= high)


def parse_table(table: RawTable, schema: FeatureSchema) -> Dataset:
    """Every row of `table` read by `schema`; the schema's example becomes the first row."""
    target = schema.target
    table.require([s.column for s in schema.features])
    columns: dict[str, list[Any]] = {}
    for spec in schema.features:
        cells = table.columns[spec.column]
        columns[spec.name] = [_parse_cell(spec, c, table.line(i)) for i, c in enumerate(cells)]
    churned = []
    for i, cell in enumerate(table.columns[target.column]):
        label = str(cell).lower() if isinstance(cell, bool) else cell
        if label not in (target.positive, target.negative):
            raise DatasetError(
                f"{table.line(i)}: {target.column}={label!r} is neither {target.positive} "
                f"nor {target.negative}"
            )
        churned.append(label == target.positive)
    if not churned:
        raise DatasetError(f"{table.path}: no customers")
    if schema.id_column:
        ids = [str(c) if c is not None else "" for c in table.columns[schema.id_column]]
        if blank := [i for i, c in enumerate(ids) if not c]:
            raise DatasetError(f"{table.line(blank[0])}: {schema.id_column} is empty")
    else:
        ids = [str(i + 1) for i in range(len(churned))]
    example = {name: values[0] for name, values in columns.items()}
    schema = dataclasses.replace(schema, example=example, example_id=ids[0])
    return Dataset(ids, columns, churned, table.sha256, schema)


def load_dataset(
    path: Path,
    target: str | None = None,
    id_column: str | None = None,
    schema_file: Path | None = None,
) -> Dataset:
    """Read a CSV or Parquet training file and its schema (inferred, then overridden)."""
    try:
        overrides = read_schema_file(schema_file) if schema_file is not None else {}
    except SchemaError as error:
        raise DatasetError(str(error)) from None
    table = read_table(path)
    if not len(table):
        raise DatasetError(f"{path}: no customers")
    try:
        schema = infer_schema(table, target, id_column, overrides)
    except SchemaError as error:
        raise DatasetError(f"{path}: {error}") from None
    return parse_table(table, schema)


@dataclass(frozen=True)
class TrainingSource:
    """Where training data comes from: a file, its target and id columns, its schema file.

    With neither a schema file nor a target, the file is taken to be in the shipped Telco
    layout (the shipped schema file names its columns, target and id)."""

    path: Path
    target: str | None = None
    id_column: str | None = None
    schema_file: Path | None = None

    def load(self) -> Dataset:
        from churn_mlops.data.telco import TELCO_SCHEMA_FILE

        schema_file = self.schema_file
        if schema_file is None and self.target is None:
            schema_file = TELCO_SCHEMA_FILE
        try:
            return load_dataset(self.path, self.target, self.id_column, schema_file)
        except DatasetError as error:
            if schema_file == TELCO_SCHEMA_FILE and "missing columns" in str(error):
                raise DatasetError(
                    f"{error}; for data that is not in the Telco layout, name its target "
                    "column (--target) or give a schema file (--schema)"
                ) from None
            raise
