"""A circuit breaker: stop calling a failing dependency, probe it now and then, recover alone."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

logger = logging.getLogger("churn_mlops.cache")


class BreakerState(StrEnum):
    CLOSED = "closed"
    """Calls go through; consecutive failures are counted."""
    OPEN = "open"
    """Calls are refused at once until the cool-down has passed."""
    HALF_OPEN = "half_open"
    """One probe call is in flight; the others are refused until it ends."""


@dataclass(frozen=True)
class BreakerStats:
    state: BreakerState
    consecutive_failures: int
    failures: int
    """Failed calls since start."""
    outages: int
    """Times the breaker opened from closed (each outage is logged once)."""
    short_circuited: int
    """Calls refused without touching the dependency."""
    last_error: str | None


class CircuitBreaker:
    """closed -> open after `failure_threshold` consecutive failures -> half-open when a call
    arrives `cooldown_seconds` later (that call is the probe) -> closed if it succeeds, open for
    another cool-down if it fails.

    Only an outage's start (WARNING, with its reason) and its end (INFO) are logged, never each
    failed call. A result that arrives while open (a call that started before the breaker opened)
    changes nothing: calls are bounded by timeouts far shorter than the cool-down.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        cooldown_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if cooldown_seconds < 0:
            raise ValueError("cooldown_seconds must be >= 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._retry_at = 0.0
        self._opened_at = 0.0
        self._consecutive = 0
        self._failures = 0
        self._outages = 0
        self._short_circuited = 0
        self._short_circuited_at_open = 0
        self._last_error: str | None = None

    @property
    def state(self) -> BreakerState:
        return self._state

    def allow(self) -> bool:
        """Whether a call may go to the dependency now; a True in the open state makes the
        caller the probe, which must end in `record_success`, `record_failure` or `release`."""
        state = self._state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN and self._clock() >= self._retry_at:
            self._state = BreakerState.HALF_OPEN
            return True
        self._short_circuited += 1
        return False

    def record_success(self) -> None:
        if self._state is BreakerState.CLOSED:
            self._consecutive = 0
        elif self._state is BreakerState.HALF_OPEN:
            self._state = BreakerState.CLOSED
            self._consecutive = 0
            logger.info(
                "%s is answering again after %.1f s; %d calls were skipped meanwhile",
                self.name,
                self._clock() - self._opened_at,
                self._short_circuited - self._short_circuited_at_open,
            )

    def record_failure(self, reason: str) -> None:
        self._failures += 1
        self._last_error = reason
        if self._state is BreakerState.CLOSED:
            self._consecutive += 1
            if self._consecutive >= self.failure_threshold:
                self._open()
                self._outages += 1
                self._opened_at = self._retry_at - self.cooldown_seconds
                self._short_circuited_at_open = self._short_circuited
                logger.warning(
                    "%s is failing (%d calls in a row, last: %s); not calling it for %.1f s, "
                    "then probing; outage counted, not logged per call",
                    self.name,
                    self._consecutive,
                    reason,
                    self.cooldown_seconds,
                )
        elif self._state is BreakerState.HALF_OPEN:
            self._open()
            logger.debug(
                "%s probe failed (%s); next probe in %.1f s",
                self.name,
                reason,
                self.cooldown_seconds,
            )

    def release(self) -> None:
        """A call ended with neither success nor failure (its caller was cancelled, or it was
        refused locally); if it was the probe, the next call probes instead."""
        if self._state is BreakerState.HALF_OPEN:
            self._state = BreakerState.OPEN
            self._retry_at = self._clock()

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._retry_at = self._clock() + self.cooldown_seconds

    def stats(self) -> BreakerStats:
        return BreakerStats(
            state=self._state,
            consecutive_failures=self._consecutive,
            failures=self._failures,
            outages=self._outages,
            short_circuited=self._short_circuited,
            last_error=self._last_error,
        )
