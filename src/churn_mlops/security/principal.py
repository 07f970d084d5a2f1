"""Who is calling, and what they may do."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Scope(StrEnum):
    PREDICT = "predict"
    """`/predict`, `/predict/batch`, `/customers/{id}/predict`."""
    READ = "read"
    """Customers, predictions, the model, cache statistics."""
    ADMIN = "admin"
    """Clearing the cache, managing keys and users, per-request profiling."""


ALL_SCOPES = frozenset(Scope)


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Scope names (also comma- or space-separated) as scopes; ValueError names an unknown one."""
    scopes: set[Scope] = set()
    for value in values:
        for name in value.replace(",", " ").split():
            try:
                scopes.add(Scope(name.strip().lower()))
            except ValueError:
                known = ", ".join(sorted(Scope))
                raise ValueError(f"unknown scope {name!r}; known scopes: {known}") from None
    return frozenset(scopes)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: an API key or a user who logged in."""

    id: str
    """Unique and stable: `key:<key id>` or `user:<username>`; rate limits are keyed by it."""
    name: str
    kind: Literal["api_key", "user", "anonymous"]
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


MAX_RATE_PER_SECOND = 1_000_000.0
MAX_BURST = 10_000_000


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: `burst` requests at once, refilled at `per_second` (an API key's own)."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        # Also refuses NaN and infinities, which a bucket's arithmetic cannot recover from.
        if not 0 < self.per_second <= MAX_RATE_PER_SECOND:
            raise ValueError(f"a rate limit is above 0 and at most {MAX_RATE_PER_SECOND:g}/s")
        if not 1 <= self.burst <= MAX_BURST:
            raise ValueError(f"a burst is at least 1 and at most {MAX_BURST}")

    @classmethod
    def of(cls, per_second: float, burst: int | None = None) -> RateLimit:
        """`per_second` with `burst`, or else two seconds' worth (the ratio of the defaults)."""
        if burst is None:
            finite = 0 < per_second <= MAX_RATE_PER_SECOND  # else the constructor refuses it
            burst = max(1, math.ceil(2 * per_second)) if finite else 1
        return cls(per_second, burst)


ANONYMOUS = Principal("anonymous", "anonymous", "anonymous", frozenset(ALL_SCOPES))
"""Every request's principal when authentication is off (`CHURN_AUTH_ENABLED=false`)."""
