"""The shipped Telco example's features as constants, for its tests, benchmarks and docs.

Serving never reads these: it builds everything from the served model's schema. They are the
Telco schema's names and its first customer, read from the shipped CSV at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from churn_mlops.core.request_models import request_models
from churn_mlops.data.telco import telco_schema

TELCO_SCHEMA = telco_schema()
FEATURE_NAMES: tuple[str, ...] = TELCO_SCHEMA.names
CATEGORICAL_FEATURES: frozenset[str] = TELCO_SCHEMA.categorical
INTEGER_FEATURES: frozenset[str] = TELCO_SCHEMA.integer
# The first customer of the shipped dataset (8879-ZKJOF).
EXAMPLE_CUSTOMER_ID: str = TELCO_SCHEMA.example_id or ""
EXAMPLE_FEATURES: dict[str, Any] = dict(TELCO_SCHEMA.example)
_MODELS = request_models(TELCO_SCHEMA)

if TYPE_CHECKING:
    # What the models built at run time hold, for type checkers (they cannot see those).

    class CustomerFeatures(BaseModel):
        def __getattr__(self, name: str) -> Any: ...

    class PredictRequest(BaseModel):
        customer_id: str | None
        features: CustomerFeatures
        explain: bool

else:
    CustomerFeatures = _MODELS.features
    PredictRequest = _MODELS.request
