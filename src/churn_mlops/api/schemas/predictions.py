"""Response models of the prediction routes (the request model is the domain's PredictRequest)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from churn_mlops.api.schemas.reasons import Reasons


class PredictResponse(BaseModel):
    """The churn prediction for one customer."""

    customer_id: str | None
    churn_probability: float = Field(ge=0, le=1)
    will_churn: bool = Field(description="churn_probability >= the model's decision threshold.")
    model_version: str
    cached: bool = Field(description="True when the answer came from the prediction cache.")
    reasons: Reasons | None = Field(
        default=None,
        description='Only in answers asked for with "explain": true (absent otherwise): the '
        "features that moved this customer's churn log-odds most.",
    )


class BatchPredictResponse(BaseModel):
    """Predictions in the order of the request's items."""

    predictions: list[PredictResponse]
