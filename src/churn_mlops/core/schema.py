"""The feature schema: what a model reads, learnt from its training data and stored with it.

Each feature has a kind (categorical with its allowed values, integer or number with bounds,
boolean), may be nullable, and says what an unseen category does: refused (422), or read as a
missing value, which the model routes like a NaN. The schema travels in the model artifact; the
request models, the fast decoder, the encoder and the Open Inference Protocol metadata are all
built from it at start-up, so a team serves its own columns without code.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

FeatureKind = Literal["categorical", "integer", "number", "boolean"]
UnknownCategory = Literal["refuse", "missing"]

KINDS: tuple[FeatureKind, ...] = ("categorical", "integer", "number", "boolean")
SCHEMA_FORMAT = 1
# A feature's name is a request field: snake_case, and none of the request's own fields.
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
RESERVED_NAMES = frozenset({"customer_id", "features", "explain"})
# Categories are request strings; the request parser refuses longer strings anyway.
MAX_CATEGORY_LENGTH = 64
MAX_CATEGORIES = 10_000


class SchemaError(ValueError):
    """A schema (a document, a schema file, or what was inferred) is invalid; says why."""


Bound = int | float


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One feature: its request name, its column in the data file, and what it accepts."""

    name: str
    kind: FeatureKind
    column: str
    nullable: bool = False
    values: tuple[str, ...] = ()
    minimum: Bound | None = None
    maximum: Bound | None = None
    unknown: UnknownCategory = "refuse"
    description: str | None = None
    # The value a stored customer without this column is scored with (a column added by a
    # retrain); None: such customers make the model's promotion fail.
    default: Any = None

    def __post_init__(self) -> None:
        where = f"feature {self.name!r}"
        if not _NAME.match(self.name):
            raise SchemaError(
                f"{where}: a name is lower-case letters, digits and '_', starting with a letter"
            )
        if self.name in RESERVED_NAMES:
            raise SchemaError(f"{where}: the name is a request field of its own; rename it")
        if self.kind not in KINDS:
            raise SchemaError(f"{where}: kind {self.kind!r} is none of {', '.join(KINDS)}")
        if self.unknown not in ("refuse", "missing"):
            raise SchemaError(f"{where}: unknown must be 'refuse' or 'missing'")
        if self.kind == "categorical":
            self._check_categories(where)
        elif self.values:
            raise SchemaError(f"{where}: only a categorical feature has values")
        if self.kind in ("integer", "number"):
            self._check_bounds(where)
        elif self.minimum is not None or self.maximum is not None:
            raise SchemaError(f"{where}: only a numeric feature has bounds")

    def _check_categories(self, where: str) -> None:
        if not self.values:
            raise SchemaError(f"{where}: a categorical feature needs at least one value")
        if len(self.values) > MAX_CATEGORIES:
            raise SchemaError(f"{where}: more than {MAX_CATEGORIES} values")
        if len(set(self.values)) != len(self.values):
            raise SchemaError(f"{where}: a value is listed twice")
        for value in self.values:
            if not isinstance(value, str) or not 0 < len(value) <= MAX_CATEGORY_LENGTH:
                raise SchemaError(
                    f"{where}: value {value!r} is not a string of 1 to "
                    f"{MAX_CATEGORY_LENGTH} characters"
                )

    def _check_bounds(self, where: str) -> None:
        for bound in (self.minimum, self.maximum):
            if bound is None:
                continue
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                raise SchemaError(f"{where}: bound {bound!r} is not a number")
            if not math.isfinite(bound):
                raise SchemaError(f"{where}: bounds must be finite")
            if self.kind == "integer" and not float(bound).is_integer():
                raise SchemaError(f"{where}: an integer feature's bounds are integers")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise SchemaError(f"{where}: minimum {self.minimum} is above maximum {self.maximum}")

    @property
    def is_flag(self) -> bool:
        """An integer feature that is 0 or 1: requests may send it as a boolean too."""
        return self.kind == "integer" and self.minimum == 0 and self.maximum == 1

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"name": self.name, "kind": self.kind, "column": self.column}
        document["nullable"] = self.nullable
        if self.kind == "categorical":
            document["values"] = list(self.values)
            document["unknown"] = self.unknown
        if self.kind in ("integer", "number"):
            document["minimum"] = self.minimum
            document["maximum"] = self.maximum
        if self.description is not None:
            document["description"] = self.description
        if self.default is not None:
            document["default"] = self.default
        return document

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> FeatureSpec:
        known = {
            "name",
            "kind",
            "column",
            "nullable",
            "values",
            "minimum",
            "maximum",
            "unknown",
            "description",
            "default",
        }
        if extra := sorted(set(document) - known):
            raise SchemaError(f"feature {document.get('name')!r}: unknown keys {extra}")
        try:
            name = str(document["name"])
            return cls(
                name=name,
                kind=document["kind"],
                column=str(document.get("column", name)),
                nullable=bool(document.get("nullable", False)),
                values=tuple(document.get("values", ())),
                minimum=document.get("minimum"),
                maximum=document.get("maximum"),
                unknown=document.get("unknown", "refuse"),
                description=document.get("description"),
                default=document.get("default"),
            )
        except KeyError as missing:
            raise SchemaError(f"a feature document has no {missing.args[0]!r}") from None


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """The column that says whether a customer churned, and the value that means yes."""

    column: str
    positive: str = "Yes"
    negative: str = "No"


@dataclass(frozen=True)
class FeatureSchema:
    """The features a model reads, in the model's column order, and where the data had them."""

    features: tuple[FeatureSpec, ...]
    target: TargetSpec
    id_column: str | None = None
    # One customer of the training data: the OpenAPI examples and the load tests' bodies.
    example: Mapping[str, Any] = field(default_factory=dict)
    example_id: str | None = None

    def __post_init__(self) -> None:
        if not self.features:
            raise SchemaError("a schema needs at least one feature")
        names = [spec.name for spec in self.features]
        if duplicated := sorted({n for n in names if names.count(n) > 1}):
            raise SchemaError(f"features named twice: {', '.join(duplicated)}")
        if self.example and set(self.example) != set(names):
            raise SchemaError("the example must give a value for exactly the schema's features")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.features)

    @property
    def categorical(self) -> frozenset[str]:
        return frozenset(s.name for s in self.features if s.kind == "categorical")

    @property
    def integer(self) -> frozenset[str]:
        return frozenset(s.name for s in self.features if s.kind == "integer")

    def spec(self, name: str) -> FeatureSpec:
        for spec in self.features:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SCHEMA_FORMAT,
            "features": [spec.to_dict() for spec in self.features],
            "target": {
                "column": self.target.column,
                "positive": self.target.positive,
                "negative": self.target.negative,
            },
            "id_column": self.id_column,
            "example": dict(self.example),
            "example_id": self.example_id,
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> FeatureSchema:
        if document.get("format") != SCHEMA_FORMAT:
            raise SchemaError(
                f"schema format {document.get('format')!r} is not {SCHEMA_FORMAT}; "
                "retrain the model with this version"
            )
        features = document.get("features")
        target = document.get("target")
        if not isinstance(features, Sequence) or not isinstance(target, Mapping):
            raise SchemaError("a schema document needs 'features' (a list) and 'target'")
        return cls(
            features=tuple(FeatureSpec.from_dict(cast(Mapping[str, Any], f)) for f in features),
            target=TargetSpec(
                str(target["column"]),
                str(target.get("positive", "Yes")),
                str(target.get("negative", "No")),
            ),
            id_column=document.get("id_column"),
            example=dict(document.get("example") or {}),
            example_id=document.get("example_id"),
        )

    def canonical_json(self) -> bytes:
        """The schema as sorted, compact JSON: the bytes its hash is taken of."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json()).hexdigest()

    def missing_from(self, stored: set[str]) -> list[str]:
        """The features a row with only the `stored` columns lacks and cannot be scored
        without: no default, and not nullable (a nullable one is read as missing)."""
        return [
            s.name
            for s in self.features
            if s.name not in stored and s.default is None and not s.nullable
        ]


def example_features(schema: FeatureSchema) -> dict[str, Any]:
    """The schema's example customer (the first row of its training data); for a schema without
    one, a valid customer made from its specs."""
    if schema.example:
        return dict(schema.example)
    made: dict[str, Any] = {}
    for spec in schema.features:
        if spec.kind == "categorical":
            made[spec.name] = spec.values[0]
        elif spec.kind == "boolean":
            made[spec.name] = False
        elif spec.minimum is not None:
            made[spec.name] = spec.minimum
        else:
            made[spec.name] = 0 if spec.maximum is None or spec.maximum >= 0 else spec.maximum
    return made
