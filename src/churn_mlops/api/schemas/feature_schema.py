"""The response of `GET /model/schema`: the served model's feature schema as its artifact stores
it (`FeatureSchema.to_dict()`), with its sha256."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class FeatureDocument(BaseModel):
    """One feature the model reads, and what a request may send for it."""

    name: str = Field(description="The field of `features` in a request.")
    kind: Literal["categorical", "integer", "number", "boolean"]
    column: str = Field(description="The feature's column in the training data file.")
    nullable: bool = Field(description="Whether a request may send null (read as missing).")
    values: list[str] | None = Field(
        default=None, description="A categorical feature's allowed values, sorted."
    )
    unknown: Literal["refuse", "missing"] | None = Field(
        default=None,
        description="A categorical feature's rule for a value it does not list: `refuse` (422) "
        "or `missing` (scored as a missing value).",
    )
    minimum: int | float | None = Field(
        default=None, description="A numeric feature's lowest accepted value."
    )
    maximum: int | float | None = Field(
        default=None, description="A numeric feature's highest accepted value."
    )
    description: str | None = None
    default: Any = Field(
        default=None,
        description="The value a stored customer without this column is scored with.",
    )


class TargetDocument(BaseModel):
    """The training data's churn column, and its values for yes and no."""

    column: str
    positive: str
    negative: str


class FeatureSchemaDocument(BaseModel):
    """The served model's feature schema: what `/predict` validates requests by."""

    format: int = Field(description="The schema document's format version.")
    features: list[FeatureDocument] = Field(description="In the model's column order.")
    target: TargetDocument
    id_column: str | None = Field(description="The training data's customer id column.")
    example: dict[str, Any] = Field(
        description="One customer of the training data: the OpenAPI examples' features."
    )
    example_id: str | None
    sha256: str = Field(
        description="sha256 of the schema's canonical JSON: the model metadata's "
        "`schema_sha256` for artifacts that store schema.json."
    )
