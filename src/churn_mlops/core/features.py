"""The domain's customer: the features of one customer, validated strictly, and a request to
score one.

Categorical fields accept exactly the values of the IBM Telco dataset; numbers are strict JSON
numbers (no strings), finite and in range; unknown fields are refused.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _bool_to_int(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def _integral_float_to_int(value: Any) -> Any:
    # JSON Schema's "integer" includes 41.0; strings and 41.5 are still refused.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _zero_one_or_boolean(schema: dict[str, Any]) -> None:
    """The documented schema of `senior_citizen`: what the validator accepts, booleans too."""
    schema.pop("enum", None)
    schema.pop("type", None)
    schema["anyOf"] = [{"type": "integer", "enum": [0, 1]}, {"type": "boolean"}]


YesNo = Literal["No", "Yes"]
InternetAddOn = Literal["No", "No internet service", "Yes"]
# The upper bound keeps every charge finite in the model's float32 rows.
MAX_CHARGE = 1_000_000
Charge = Annotated[float, Field(ge=0, le=MAX_CHARGE, allow_inf_nan=False, strict=True)]

# The first customer of the shipped dataset (8879-ZKJOF); a test checks it still is.
EXAMPLE_CUSTOMER_ID = "8879-ZKJOF"
EXAMPLE_FEATURES: dict[str, Any] = {
    "gender": "Female",
    "senior_citizen": 0,
    "partner": "No",
    "dependents": "No",
    "tenure": 41,
    "phone_service": "Yes",
    "multiple_lines": "No",
    "internet_service": "DSL",
    "online_security": "Yes",
    "online_backup": "No",
    "device_protection": "Yes",
    "tech_support": "Yes",
    "streaming_tv": "Yes",
    "streaming_movies": "Yes",
    "contract": "One year",
    "paperless_billing": "Yes",
    "payment_method": "Bank transfer (automatic)",
    "monthly_charges": 79.85,
    "total_charges": 3320.75,
}


class CustomerFeatures(BaseModel):
    """The 19 features of one customer, named as the dataset's columns in snake_case."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [EXAMPLE_FEATURES]}
    )

    gender: Literal["Female", "Male"]
    senior_citizen: Annotated[Literal[0, 1], BeforeValidator(_bool_to_int)] = Field(
        description="1 for a senior citizen; true/false are accepted too.",
        json_schema_extra=_zero_one_or_boolean,
    )
    partner: YesNo
    dependents: YesNo
    tenure: Annotated[
        int,
        Field(ge=0, le=120, strict=True, description="Months as a customer."),
        BeforeValidator(_integral_float_to_int),
    ]
    phone_service: YesNo
    multiple_lines: Literal["No", "No phone service", "Yes"]
    internet_service: Literal["DSL", "Fiber optic", "No"]
    online_security: InternetAddOn
    online_backup: InternetAddOn
    device_protection: InternetAddOn
    tech_support: InternetAddOn
    streaming_tv: InternetAddOn
    streaming_movies: InternetAddOn
    contract: Literal["Month-to-month", "One year", "Two year"]
    paperless_billing: YesNo
    payment_method: Literal[
        "Bank transfer (automatic)", "Credit card (automatic)", "Electronic check", "Mailed check"
    ]
    monthly_charges: Charge
    total_charges: Charge | None = Field(
        description="Total billed so far; null for a customer who has not been billed yet."
    )


# Printable text only: every id is stored with its prediction, and PostgreSQL refuses NUL in text.
CUSTOMER_ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"


class PredictRequest(BaseModel):
    """One customer to score."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [{"customer_id": EXAMPLE_CUSTOMER_ID, "features": EXAMPLE_FEATURES}]
        },
    )

    customer_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=CUSTOMER_ID_PATTERN,
        description="The caller's id for this customer, echoed back and recorded with the "
        "prediction; optional; no control characters.",
    )
    features: CustomerFeatures
    explain: bool = Field(
        default=False,
        strict=True,
        description="true adds `reasons` to the answer: the features that moved this "
        "customer's churn log-odds most, with their exact TreeSHAP contributions "
        "(at most CHURN_EXPLAIN_TOP_K of them).",
    )


FEATURE_NAMES: tuple[str, ...] = tuple(CustomerFeatures.model_fields)
CATEGORICAL_FEATURES: frozenset[str] = frozenset(
    {
        "gender",
        "partner",
        "dependents",
        "phone_service",
        "multiple_lines",
        "internet_service",
        "online_security",
        "online_backup",
        "device_protection",
        "tech_support",
        "streaming_tv",
        "streaming_movies",
        "contract",
        "paperless_billing",
        "payment_method",
    }
)
INTEGER_FEATURES: frozenset[str] = frozenset({"senior_citizen", "tenure"})
