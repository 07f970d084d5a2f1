"""The `reasons` of an answer asked for with `"explain": true` (prediction/reasons.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

EXAMPLE_REASONS: dict[str, Any] = {
    "base_value": -1.2829,
    "log_odds": -3.1047,
    "features": [
        {
            "feature": "contract",
            "value": "One year",
            "contribution": -0.8231,
            "direction": "lowers",
        },
        {"feature": "tenure", "value": 41, "contribution": -0.4411, "direction": "lowers"},
        {
            "feature": "online_security",
            "value": "Yes",
            "contribution": -0.3175,
            "direction": "lowers",
        },
        {
            "feature": "internet_service",
            "value": "DSL",
            "contribution": -0.2893,
            "direction": "lowers",
        },
        {
            "feature": "streaming_movies",
            "value": "Yes",
            "contribution": 0.0626,
            "direction": "raises",
        },
    ],
}


class Reason(BaseModel):
    """One feature and how much it moved this customer's churn log-odds."""

    feature: str = Field(description="The feature's name, as in the request's `features`.")
    value: Any = Field(description="The feature's value, as sent (or as stored).")
    contribution: float = Field(
        description="Its exact TreeSHAP contribution to the log-odds (path-dependent, as the "
        "shap library's TreeExplainer computes it for this model)."
    )
    direction: Literal["raises", "lowers"] = Field(
        description="Whether it raises or lowers the churn risk."
    )


class Reasons(BaseModel):
    """Why the model gives this customer its probability: base_value plus every feature's
    contribution is log_odds, whose sigmoid is churn_probability."""

    model_config = {"json_schema_extra": {"examples": [EXAMPLE_REASONS]}}

    base_value: float = Field(
        description="The model's log-odds before any feature is known (its expectation over "
        "the training customers)."
    )
    log_odds: float = Field(description="The model's log-odds for this customer.")
    features: list[Reason] = Field(
        description="The features with the largest contributions by magnitude, largest first: "
        "at most CHURN_EXPLAIN_TOP_K, none whose contribution is 0."
    )
