"""The feature schema's own rules: what a valid schema is, its document and hash, and which
features stored rows can be scored without."""

from __future__ import annotations

import dataclasses

import pytest

from churn_mlops.core.schema import FeatureSchema, FeatureSpec, SchemaError, TargetSpec
from churn_mlops.data.telco_example import TELCO_SCHEMA
from churn_mlops.db.stored_features import with_defaults


def _schema(*specs: FeatureSpec) -> FeatureSchema:
    return FeatureSchema(specs, TargetSpec("churned"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (lambda: FeatureSpec("Seats", "integer", "Seats"), "lower-case letters"),
        (lambda: FeatureSpec("explain", "boolean", "x"), "request field of its own"),
        (lambda: FeatureSpec("plan", "text", "plan"), "none of categorical"),  # type: ignore[arg-type]
        (lambda: FeatureSpec("plan", "categorical", "plan"), "at least one value"),
        (lambda: FeatureSpec("plan", "categorical", "p", values=("a", "a")), "listed twice"),
        (lambda: FeatureSpec("plan", "categorical", "p", values=("x" * 65,)), "1 to 64"),
        (lambda: FeatureSpec("seats", "integer", "s", minimum=0.5), "bounds are integers"),
        (lambda: FeatureSpec("seats", "integer", "s", minimum=5, maximum=1), "above maximum"),
        (lambda: FeatureSpec("spend", "number", "s", maximum=float("inf")), "finite"),
        (lambda: FeatureSpec("flag", "boolean", "f", minimum=0), "only a numeric"),
        (lambda: FeatureSpec("seats", "integer", "s", values=("1",)), "only a categorical"),
    ],
)
def test_an_invalid_feature_is_refused_with_the_reason(spec: object, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        spec()  # type: ignore[operator]


def test_a_schema_refuses_duplicates_and_an_example_of_other_features() -> None:
    seats = FeatureSpec("seats", "integer", "Seats", minimum=1, maximum=10)
    with pytest.raises(SchemaError, match="named twice: seats"):
        _schema(seats, seats)
    with pytest.raises(SchemaError, match="example"):
        dataclasses.replace(_schema(seats), example={"other": 1})


def test_the_document_round_trips_and_the_hash_follows_every_field() -> None:
    again = FeatureSchema.from_dict(TELCO_SCHEMA.to_dict())
    assert again == TELCO_SCHEMA
    assert again.sha256 == TELCO_SCHEMA.sha256
    described = dataclasses.replace(TELCO_SCHEMA.features[0], description="changed")
    changed = dataclasses.replace(TELCO_SCHEMA, features=(described, *TELCO_SCHEMA.features[1:]))
    assert changed.sha256 != TELCO_SCHEMA.sha256
    with pytest.raises(SchemaError, match="format"):
        FeatureSchema.from_dict({**TELCO_SCHEMA.to_dict(), "format": 99})


def test_stored_rows_lacking_a_nullable_feature_are_scored_with_it_missing() -> None:
    plan = FeatureSpec("plan", "categorical", "Plan", nullable=True, values=("a", "b"))
    seats = FeatureSpec("seats", "integer", "Seats", minimum=1, maximum=10)
    logins = FeatureSpec("logins", "integer", "Logins", minimum=0, maximum=9, default=0)
    schema = _schema(seats, plan, logins)
    assert schema.missing_from({"seats"}) == []
    assert with_defaults({"seats": 3}, schema) == {"seats": 3, "plan": None, "logins": 0}
    assert schema.missing_from({"plan"}) == ["seats"]
