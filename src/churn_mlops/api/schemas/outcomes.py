"""Request and response bodies of `POST /customers/{customer_id}/outcome`."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from churn_mlops.api.schemas.customers import EXAMPLE_CUSTOMER_ID
from churn_mlops.db.outcomes import latest_observable_date

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class OutcomeReport(BaseModel):
    """What became of a customer: whether they had churned, as observed on a date."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"churned": True, "observed_at": "2026-03-10"}]},
    )

    churned: bool = Field(strict=True, description="`true` if the customer had left.")
    observed_at: date = Field(
        description="The date (YYYY-MM-DD, UTC) it was observed; predictions made before this "
        "date are judged by it. One outcome per customer and date."
    )

    @field_validator("observed_at", mode="before")
    @classmethod
    def _calendar_date_text(cls, value: object) -> object:
        # FastAPI validates the decoded JSON in Python mode, where pydantic's lax date also takes
        # a number (seconds since 1970) or a midnight timestamp: only the date text is meant.
        if not isinstance(value, str) or _ISO_DATE.fullmatch(value) is None:
            raise ValueError("must be a date as YYYY-MM-DD")
        return value

    @field_validator("observed_at")
    @classmethod
    def _not_in_the_future(cls, observed_at: date) -> date:
        latest = latest_observable_date()
        if observed_at > latest:
            raise ValueError(f"must not be later than {latest.isoformat()} (UTC)")
        return observed_at


class OutcomeRecord(BaseModel):
    """An outcome as stored, and what this request did to it."""

    customer_id: str = Field(examples=[EXAMPLE_CUSTOMER_ID], description="The external id.")
    churned: bool
    observed_at: date
    recorded_at: datetime = Field(description="When this customer and date were first recorded.")
    revised_at: datetime | None = Field(
        description="When another answer for the same date last replaced the stored one."
    )
    status: Literal["created", "updated", "unchanged"] = Field(
        description="`created` (201): new; `unchanged` (200): the same outcome was already "
        "recorded; `updated` (200): it replaced another answer for the same date."
    )
