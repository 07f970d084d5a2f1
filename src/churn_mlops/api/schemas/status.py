"""Response models of the health probes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class LiveStatus(BaseModel):
    """The process is up."""

    status: Literal["ok"]


class ReadyStatus(BaseModel):
    """Whether the service can answer predictions, and how its optional dependencies are."""

    status: Literal["ready", "starting"]
    model_version: str | None
    redis: Literal["disabled", "ok", "degraded"] = Field(
        default="disabled",
        description="The shared cache; degraded means predictions are served without it.",
    )
    database: Literal["disabled", "ok", "degraded"] = Field(
        default="disabled",
        description="Customers and history; degraded means predictions are served without it.",
    )
