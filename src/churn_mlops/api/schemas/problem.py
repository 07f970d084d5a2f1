"""The body of every error response."""

from __future__ import annotations

from pydantic import BaseModel

from churn_mlops.core.errors import FieldError


class Problem(BaseModel):
    """An RFC 9457 problem document: the body of every error response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None
