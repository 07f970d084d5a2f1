"""Who is calling, and what they may do."""

from __future__ import annotations

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


ANONYMOUS = Principal("anonymous", "anonymous", "anonymous", frozenset(ALL_SCOPES))
"""Every request's principal when authentication is off (`CHURN_AUTH_ENABLED=false`)."""
