"""Response models of the customer and prediction-history endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from churn_mlops.core.features import EXAMPLE_CUSTOMER_ID, CustomerFeatures


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
