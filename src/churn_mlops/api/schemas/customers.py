"""Models of the customer and prediction-history endpoints.

A customer's `features` are the served model's: `customer_write_model(schema)` builds the body
of `POST /customers` from the schema's request models. The response models document them as
`CustomerFeatures`, the component the app's OpenAPI document takes from the served model's
request; here it is the shipped example's, which the served one replaces in the document.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from churn_mlops.core.request_models import (
    CUSTOMER_ID_MAX_LENGTH,
    CUSTOMER_ID_PATTERN,
    request_models,
)
from churn_mlops.core.schema import FeatureSchema
from churn_mlops.data import telco_schema

_DOCUMENTED = telco_schema()
EXAMPLE_CUSTOMER_ID = _DOCUMENTED.example_id
CustomerFeatures: Any = request_models(_DOCUMENTED).features


class PredictionRecord(BaseModel):
    """One prediction the service answered, as recorded in the history."""

    id: uuid.UUID
    customer_id: str | None = Field(
        description="The customer's external id; null for an anonymous request."
    )
    model_version: str
    churn_probability: float = Field(ge=0, le=1)
    will_churn: bool
    cached: bool = Field(description="True when the answer came from the prediction cache.")
    latency_ms: float | None = Field(description="Time the service took to answer.")
    created_at: datetime


class CustomerRecord(BaseModel):
    """A stored customer and the features the model scores."""

    customer_id: str = Field(examples=[EXAMPLE_CUSTOMER_ID], description="The external id.")
    features: CustomerFeatures
    created_at: datetime
    updated_at: datetime


class CustomerDetail(CustomerRecord):
    """A customer with its most recent predictions, newest first."""

    recent_predictions: list[PredictionRecord]


class CustomerSummary(CustomerRecord):
    """A customer with its latest prediction (null if it was never scored)."""

    latest_prediction: PredictionRecord | None


class CustomerPage(BaseModel):
    """One page of customers in id order; pass `next_after` as `after` for the next page."""

    items: list[CustomerSummary]
    next_after: int | None = Field(description="Cursor of the next page; null on the last page.")


class PredictionHistory(BaseModel):
    """Predictions, newest first."""

    items: list[PredictionRecord]


def customer_write_model(schema: FeatureSchema) -> type[BaseModel]:
    """The body of `POST /customers` for `schema`'s features (the same class for the same
    schema)."""
    return _write_model(schema.canonical_json())


@cache
def _write_model(canonical: bytes) -> type[BaseModel]:
    schema = FeatureSchema.from_dict(json.loads(canonical))
    models = request_models(schema)
    example: dict[str, Any] = {"customer_id": schema.example_id, "features": models.example}
    return create_model(
        "CustomerWrite",
        __config__=ConfigDict(
            extra="forbid", frozen=True, json_schema_extra={"examples": [example]}
        ),
        __doc__="A customer to store: its external id and its features.",
        customer_id=(
            str,
            Field(
                min_length=1,
                max_length=CUSTOMER_ID_MAX_LENGTH,
                pattern=CUSTOMER_ID_PATTERN,
                description="The customer's external id; no control characters.",
            ),
        ),
        features=(models.features, ...),
    )


class CustomerWritten(CustomerRecord):
    """The stored customer, and whether this request created it."""

    created: bool = Field(description="True when the customer did not exist before.")
