"""The Open Inference Protocol inputs of a served model, built once per model from its feature
schema: one tensor per feature, named as the feature, with the datatypes it may have, its
bounds, its categories and the encoder's code of each.

Datatypes by kind (the first is the one model metadata advertises):

- categorical: BYTES. An unseen value is refused (400 naming the tensor and row) when the
  feature's `unknown` is `refuse`, read as missing (NaN) when it is `missing`.
- integer: INT64 or INT32; a 0/1 feature also BOOL.
- number: FP64 or FP32; NaN only for a nullable feature.
- boolean: BOOL (one byte per element in binary).

Missing values of a nullable feature: NaN in an FP64/FP32 tensor for a number; for a nullable
integer or boolean, whose own datatypes have no missing value, FP64 (advertised) or FP32 with
NaN for missing and integral values otherwise (INT64/INT32, or BOOL, still accepted); an empty
BYTES element (or null in JSON) for a nullable categorical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from churn_mlops.api.v2 import kernels
from churn_mlops.core.schema import MAX_CATEGORY_LENGTH, FeatureKind, FeatureSchema, FeatureSpec
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.features import FeatureEncoder
from churn_mlops.prediction.pipeline import PredictionPipeline

# How many categories a refusal lists before it says how many there are in all.
_LISTED_CATEGORIES = 30
_CACHED_MODELS = 8


def accepted_datatypes(spec: FeatureSpec) -> tuple[str, ...]:
    """The datatypes a feature's tensor may have; the first is the one metadata advertises."""
    if spec.kind == "categorical":
        return ("BYTES",)
    if spec.kind == "number":
        return ("FP64", "FP32")
    natural: tuple[str, ...] = ("BOOL",) if spec.kind == "boolean" else ("INT64", "INT32")
    if spec.is_flag:
        natural = ("INT64", "INT32", "BOOL")
    # A nullable integer or boolean is advertised as FP64, the type that can say "missing".
    return ("FP64", "FP32", *natural) if spec.nullable else natural


def _bound_text(spec: FeatureSpec) -> str:
    """How a refusal states the feature's range: ' from 0 to 120', ' of at least 1', ''."""
    low, high = spec.minimum, spec.maximum
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" of at least {low}"
    if high is not None:
        return f" of at most {high}"
    return ""


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One feature's input tensor: what it accepts and how its values become the row's."""

    name: str
    column: int
    """The feature's column in the model's rows."""
    kind: FeatureKind
    datatypes: tuple[str, ...]
    nullable: bool
    integral: bool
    """Values must be whole numbers (integers, and booleans sent as numbers)."""
    low: float
    high: float
    range_text: str
    table: kernels.CategoryTable | None = None
    """Categorical: the values looked up (the schema's, or the vocabulary's when unseen values
    are missing) with the encoder's code of each."""
    lookup: dict[str, float] | None = None
    unknown_missing: bool = False
    """Categorical: an unseen value is NaN (the model's missing) rather than refused."""
    plain_lookup: bool = True
    """Categorical: every element must be one of `table`'s values (no empty or unseen one)."""

    def refused_text(self) -> str:
        """What a refused categorical value is not: one of the values, or a short text."""
        if self.unknown_missing:
            text = f"a text of 1 to {MAX_CATEGORY_LENGTH} characters"
        else:
            values = self.table.values if self.table is not None else ()
            listed = ", ".join(repr(v) for v in values[:_LISTED_CATEGORIES])
            if len(values) > _LISTED_CATEGORIES:
                listed += f", ... ({len(values)} values)"
            text = f"one of {listed}"
        return text + (" (or empty, for missing)" if self.nullable else "")


def _input_spec(spec: FeatureSpec, column: int, encoder: FeatureEncoder) -> InputSpec:
    common: dict[str, Any] = {
        "name": spec.name,
        "column": column,
        "kind": spec.kind,
        "datatypes": accepted_datatypes(spec),
        "nullable": spec.nullable,
    }
    if spec.kind == "categorical":
        vocabulary = encoder.vocabularies.get(spec.name, ())
        codes = {value: float(code) for code, value in enumerate(vocabulary)}
        missing = spec.unknown == "missing"
        # A value the schema accepts but training never saw is NaN, as the encoder reads it.
        values = list(vocabulary) if missing else list(spec.values)
        table = kernels.CategoryTable(values, [codes.get(v, math.nan) for v in values])
        return InputSpec(
            **common,
            integral=False,
            low=-math.inf,
            high=math.inf,
            range_text="",
            table=table,
            lookup=dict(zip(table.values, table.codes.tolist(), strict=True)),
            unknown_missing=missing,
            plain_lookup=not (missing or spec.nullable),
        )
    low, high = (0, 1) if spec.kind == "boolean" else (spec.minimum, spec.maximum)
    return InputSpec(
        **common,
        integral=spec.kind != "number",
        low=-math.inf if low is None else low,
        high=math.inf if high is None else high,
        range_text=_bound_text(spec),
    )


class ModelInputs:
    """The input tensors of one model, in the order of its rows' columns."""

    __slots__ = ("by_name", "metadata", "names", "specs", "vocabularies")

    def __init__(self, schema: FeatureSchema, encoder: FeatureEncoder) -> None:
        columns = {name: index for index, name in enumerate(encoder.feature_names)}
        if set(columns) != set(schema.names):
            raise ValueError("the encoder's features are not the schema's")
        self.specs = tuple(
            _input_spec(spec, columns[spec.name], encoder) for spec in schema.features
        )
        self.by_name = {spec.name: spec for spec in self.specs}
        self.names: tuple[str, ...] = tuple(encoder.feature_names)
        """The features in the rows' column order."""
        self.vocabularies = encoder.vocabularies
        self.metadata: list[dict[str, Any]] = [
            {"name": spec.name, "datatype": spec.datatypes[0], "shape": [-1]} for spec in self.specs
        ]
        """The V2 metadata of each input tensor, in the schema's order."""


_BY_VERSION: dict[str, ModelInputs] = {}


def model_inputs(version: str, schema: FeatureSchema, encoder: FeatureEncoder) -> ModelInputs:
    """The inputs of the model `version` (its content version: schema and encoder included),
    built on the first request for it and kept for the last few versions served."""
    inputs = _BY_VERSION.get(version)
    if inputs is None:
        inputs = ModelInputs(schema, encoder)
        if len(_BY_VERSION) >= _CACHED_MODELS:
            del _BY_VERSION[next(iter(_BY_VERSION))]
        _BY_VERSION[version] = inputs
    return inputs


def inputs_of(artifact: ModelArtifact) -> ModelInputs:
    """The inputs of a loaded model artifact."""
    return model_inputs(artifact.version, artifact.schema, artifact.encoder)


def served_inputs(pipeline: PredictionPipeline) -> ModelInputs:
    """The inputs of a served pipeline (the champion's or its canary challenger's): one dict
    lookup per request once built."""
    inputs = _BY_VERSION.get(pipeline.version)
    if inputs is None:
        inputs = model_inputs(pipeline.version, pipeline.schema, pipeline.decoder.encoder)
    return inputs
