"""Request and response models of the model lifecycle routes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from churn_mlops.core.model_info import ModelInfo


class ChallengerStatus(BaseModel):
    """The challenger this worker scores beside the champion."""

    version: str
    mode: Literal["shadow", "canary"]
    canary_percent: float | None = Field(
        default=None, description="Share of customers the challenger answers (canary mode)."
    )


class RefusedStatus(BaseModel):
    """A version an alias names that this worker refused; the previous one keeps serving."""

    alias: str
    version: str
    reason: Literal["not_registered", "unreadable", "modified", "parity", "features"]
    detail: str
    at: str


class ModelStatus(ModelInfo):
    """The served model's metadata, and where it comes from."""

    source: Literal["registry", "directory"] = Field(
        description="`registry`: this worker follows the registry's champion and challenger; "
        "`directory`: a fixed artifact directory (`--model-dir`)."
    )
    challenger: ChallengerStatus | None = None
    refused: list[RefusedStatus] = Field(
        default_factory=list,
        description="Versions the aliases name that this worker refused to serve, and why.",
    )


class AliasUpdate(BaseModel):
    """Point an alias at a registered version."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"version": "v0123456789ab"}]}
    )

    version: str = Field(min_length=1, max_length=64, description="A registered model version.")


class AliasChange(BaseModel):
    """What an alias names after a change, and before it."""

    alias: Literal["champion", "challenger"]
    version: str | None
    previous: str | None


class OutcomeFigures(BaseModel):
    """A version's quality on outcomes: its latest score before each outcome."""

    outcomes: int
    churned: int
    roc_auc: float | None = Field(description="None while only one class was observed.")
    pr_auc: float | None
    brier_score: float
    calibration_error: float = Field(description="Expected calibration error, 10 equal bins.")


class VersionComparison(BaseModel):
    version: str
    answered: int = Field(description="Predictions this version answered in the window.")
    outcomes: OutcomeFigures | None = Field(
        description="On the outcomes both versions scored the customer before; null without any."
    )


class ShadowComparison(BaseModel):
    rows: int = Field(description="Rows both versions scored (shadow mode), newest first.")
    will_churn_agreement: float | None
    mean_abs_delta: float | None = Field(description="Mean |challenger - champion| probability.")
    p99_abs_delta: float | None


class ModelComparison(BaseModel):
    """The challenger against the champion over a window of days."""

    since: str
    window_days: int
    champion: VersionComparison
    challenger: VersionComparison
    shadow: ShadowComparison
    common_outcomes: int = Field(description="Outcomes both versions' figures are computed on.")
