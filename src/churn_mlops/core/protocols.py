"""Protocols owned by their consumers: what one part needs from another that it calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class PredictionRecorder(Protocol):
    """What the prediction pipeline calls after each answer (the prediction log's writer in the
    service); called on the request path, so it must return at once and never raise. `features`
    (only with `CHURN_LOG_FEATURES`) is the scored row in the log's compact encoding."""

    def record(
        self,
        customer_id: str | None,
        probability: float,
        will_churn: bool,
        cached: bool,
        latency_ms: float,
        model_version: str,
        challenger_version: str | None = None,
        challenger_probability: float | None = None,
        features: bytes | None = None,
    ) -> None: ...

    def record_many(
        self,
        customer_ids: Sequence[str | None],
        probabilities: Sequence[float],
        will_churn: Sequence[bool],
        cached: Sequence[bool],
        latency_ms: float,
        model_version: str,
        challenger_version: str | None = None,
        challenger_probabilities: Sequence[float] | None = None,
        features: Sequence[bytes] | None = None,
    ) -> None: ...
