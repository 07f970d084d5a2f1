"""A feature schema inferred from a training file, with a schema file's overrides applied.

Inference, per column:
- Parquet types decide (bool, integer, floating, string); a CSV column whose cells are all
  integers is an integer, all numbers a number, all true/false a boolean, else categorical;
- a column with an empty or null cell is nullable;
- a categorical's allowed values are those seen; an integer or number's bounds are the seen
  range widened by its width on each side, and never below 0 for a column with no negative
  value (tenure grows: a bound at the seen maximum would refuse next month's customers); a
  0/1 integer column is a flag, bounded to 0..1;
- the feature's name is the column's in snake_case (`MonthlyCharges` -> `monthly_charges`).

The schema file (YAML) can rename a column, change its kind, bounds, description or
nullability, replace or extend its allowed values, map unseen categories to missing, give the
default for stored customers without it, drop it, and name the target and id columns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from churn_mlops.core.schema import (
    MAX_CATEGORIES,
    FeatureKind,
    FeatureSchema,
    FeatureSpec,
    SchemaError,
    TargetSpec,
)
from churn_mlops.data.tabular import DatasetError, RawTable

_INTEGER = re.compile(r"^[+-]?\d+$")
_BOOLEAN_TEXT = {"true": True, "false": False}
_YES_LIKE = ("yes", "true", "1", "churned", "churn", "y")
_SPEC_KEYS = {
    "name",
    "kind",
    "nullable",
    "values",
    "extra_values",
    "unknown",
    "minimum",
    "maximum",
    "description",
    "default",
}
_FILE_KEYS = {"target", "positive", "negative", "id", "drop", "features"}


def feature_name(column: str) -> str:
    """A column's name as a request field: snake_case, starting with a letter."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", column.strip())
    name = re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_").lower()
    if not name or not name[0].isalpha():
        name = f"f_{name}"
    return name[:63]


def read_schema_file(path: Path) -> dict[str, Any]:
    """A schema file's overrides; SchemaError naming the file for one that is malformed."""
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise SchemaError(f"{path}: cannot read the schema file: {error}") from None
    document = document or {}
    if not isinstance(document, dict):
        raise SchemaError(f"{path}: a schema file is a mapping (target, id, drop, features)")
    if extra := sorted(set(document) - _FILE_KEYS):
        raise SchemaError(f"{path}: unknown keys {extra}; known: {sorted(_FILE_KEYS)}")
    features = document.get("features") or {}
    if not isinstance(features, dict):
        raise SchemaError(f"{path}: 'features' maps a column to its overrides")
    for column, override in features.items():
        if not isinstance(override, dict):
            raise SchemaError(f"{path}: the overrides of {column!r} are not a mapping")
        if extra := sorted(set(override) - _SPEC_KEYS):
            raise SchemaError(f"{path}: {column!r} has unknown keys {extra}")
    return document


def _kind_of(cells: Sequence[Any], typed: bool) -> FeatureKind:
    if typed:
        if all(isinstance(c, bool) for c in cells):
            return "boolean"
        if all(isinstance(c, int) and not isinstance(c, bool) for c in cells):
            return "integer"
        if all(isinstance(c, int | float) and not isinstance(c, bool) for c in cells):
            return "number"
        return "categorical"
    if all(_INTEGER.match(c) for c in cells):
        return "integer"
    if all(_is_number(c) for c in cells):
        return "number"
    if all(c.lower() in _BOOLEAN_TEXT for c in cells):
        return "boolean"
    return "categorical"


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _bounds(values: Sequence[float], kind: FeatureKind) -> tuple[int | float, int | float]:
    low, high = min(values), max(values)
    if kind == "integer" and {low, high} <= {0, 1}:
        return 0, 1
    span = max(high - low, 1)
    minimum = 0 if low >= 0 else low - span
    maximum = high + span
    if kind == "integer":
        return int(minimum), int(maximum)
    return float(minimum), float(maximum)


def infer_feature(column: str, cells: Sequence[Any], typed: bool) -> FeatureSpec:
    """What one column of training data holds, as a feature."""
    present = [c for c in cells if c is not None]
    if not present:
        raise SchemaError(f"column {column!r} has no value; drop it in the schema file")
    kind = _kind_of(present, typed)
    nullable = len(present) < len(cells)
    name = feature_name(column)
    if kind == "categorical":
        values = sorted({str(c) for c in present})
        if len(values) > MAX_CATEGORIES:
            raise SchemaError(
                f"column {column!r} has {len(values)} distinct values, more than a categorical "
                f"feature takes ({MAX_CATEGORIES}): an identifier or free text? Pass it as "
                "--id, or drop it in the schema file"
            )
        return FeatureSpec(name, "categorical", column, nullable, values=tuple(values))
    if kind == "boolean":
        return FeatureSpec(name, "boolean", column, nullable)
    numbers = [float(c) for c in present]
    minimum, maximum = _bounds(numbers, kind)
    return FeatureSpec(name, kind, column, nullable, minimum=minimum, maximum=maximum)


def _override(spec: FeatureSpec, override: Mapping[str, Any]) -> FeatureSpec:
    kind = override.get("kind", spec.kind)
    values: tuple[str, ...] = spec.values if kind == "categorical" else ()
    if "values" in override:
        values = tuple(str(v) for v in override["values"])
    if extra := override.get("extra_values"):
        values = (*values, *(str(v) for v in extra if str(v) not in values))
    if kind == "categorical" and not values:
        raise SchemaError(
            f"feature {spec.name!r}: made categorical without values; list them in 'values'"
        )
    numeric = kind in ("integer", "number")
    same_kind = kind == spec.kind
    return FeatureSpec(
        name=str(override.get("name", spec.name)),
        kind=kind,
        column=spec.column,
        nullable=bool(override.get("nullable", spec.nullable)),
        values=tuple(sorted(values)),
        minimum=override.get("minimum", spec.minimum if same_kind else None) if numeric else None,
        maximum=override.get("maximum", spec.maximum if same_kind else None) if numeric else None,
        unknown=override.get("unknown", spec.unknown),
        description=override.get("description", spec.description),
        default=override.get("default", spec.default),
    )


def _positive_label(table: RawTable, target: str, given: Mapping[str, Any]) -> TargetSpec:
    labels = sorted({_label(c) for c in table.columns[target] if c is not None})
    positive = given.get("positive")
    negative = given.get("negative")
    if positive is not None and negative is not None:
        return TargetSpec(target, str(positive), str(negative))
    if len(labels) != 2:
        shown = ", ".join(labels[:5])
        raise SchemaError(
            f"target {target!r} holds {len(labels)} values ({shown}); it needs two, churned "
            "or not (name them with positive: and negative: in the schema file)"
        )
    if positive is None:
        yes_like = [label for label in labels if label.lower() in _YES_LIKE]
        if len(yes_like) != 1:
            raise SchemaError(
                f"target {target!r}: which of {labels} means churned? Say it with positive: "
                "in the schema file"
            )
        positive = yes_like[0]
    positive = str(positive)
    if positive not in labels:
        raise SchemaError(f"target {target!r} never holds {positive!r}; it holds {labels}")
    negative = next(label for label in labels if label != positive)
    return TargetSpec(target, positive, negative)


def _label(cell: Any) -> str:
    return str(cell).lower() if isinstance(cell, bool) else str(cell)


def infer_schema(
    table: RawTable,
    target: str | None = None,
    id_column: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> FeatureSchema:
    """The schema of `table`: every column but the target and id is a feature, inferred, then
    overridden by the schema file's `overrides`. The example is the first row's values, so
    the caller sets it once the rows are parsed (`Dataset.with_example`)."""
    given = overrides or {}
    target = target or given.get("target")
    id_column = id_column or given.get("id")
    if not target:
        raise SchemaError("name the target column: --target COLUMN, or target: in the file")
    table.require([target, *([id_column] if id_column else [])])
    dropped = set(given.get("drop") or ())
    if unknown := sorted(dropped - set(table.columns)):
        raise SchemaError(f"drop names columns the data does not have: {', '.join(unknown)}")
    feature_overrides = dict(given.get("features") or {})
    specs: list[FeatureSpec] = []
    for column, cells in table.columns.items():
        if column in (target, id_column) or column in dropped:
            continue
        try:
            spec = infer_feature(column, cells, table.typed)
        except SchemaError as error:
            raise DatasetError(f"{table.path}: {error}") from None
        override = feature_overrides.pop(column, None) or feature_overrides.pop(spec.name, None)
        specs.append(_override(spec, override) if override else spec)
    if feature_overrides:
        raise SchemaError(
            f"the schema file overrides columns the data does not have: "
            f"{', '.join(sorted(feature_overrides))}"
        )
    return FeatureSchema(
        features=tuple(specs),
        target=_positive_label(table, target, given),
        id_column=id_column,
    )
