"""CircuitBreaker: opens after consecutive failures, probes once after the cool-down, logs once."""

from __future__ import annotations

import logging

import pytest

from churn_mlops.cache.breaker import BreakerState, CircuitBreaker
from tests.unit.cache.conftest import FakeClock


def _breaker(clock: FakeClock, threshold: int = 3, cooldown: float = 5.0) -> CircuitBreaker:
    return CircuitBreaker(
        "Redis", failure_threshold=threshold, cooldown_seconds=cooldown, clock=clock
    )


def _fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record_failure("timeout")


def test_breaker_opens_after_threshold_consecutive_failures(clock: FakeClock) -> None:
    breaker = _breaker(clock, threshold=3)
    _fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    _fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.stats().short_circuited == 1


def test_a_success_resets_the_consecutive_count(clock: FakeClock) -> None:
    breaker = _breaker(clock, threshold=3)
    _fail(breaker, 2)
    breaker.record_success()
    _fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.stats().failures == 4


def test_after_the_cooldown_one_probe_goes_through_and_its_success_closes(
    clock: FakeClock,
) -> None:
    breaker = _breaker(clock, cooldown=5.0)
    _fail(breaker, 3)
    clock.advance(4.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()  # one probe at a time
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()


def test_a_failed_probe_reopens_for_another_cooldown(clock: FakeClock) -> None:
    breaker = _breaker(clock, cooldown=5.0)
    _fail(breaker, 3)
    clock.advance(5)
    assert breaker.allow()
    breaker.record_failure("refused")
    assert breaker.state is BreakerState.OPEN
    clock.advance(4.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.allow()
    assert breaker.stats().outages == 1


def test_a_released_probe_lets_the_next_call_probe(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    _fail(breaker, 3)
    clock.advance(5)
    assert breaker.allow()
    breaker.release()
    assert breaker.state is BreakerState.OPEN
    assert breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN


def test_a_late_success_while_open_does_not_close(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    _fail(breaker, 3)
    breaker.record_success()
    assert breaker.state is BreakerState.OPEN


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = _breaker(clock, threshold=3)
    with caplog.at_level(logging.DEBUG, logger="churn_mlops.cache"):
        _fail(breaker, 3)
        for _ in range(100):
            breaker.allow()
            breaker.record_failure("timeout")
        for _ in range(3):  # probes that fail
            clock.advance(5)
            assert breaker.allow()
            breaker.record_failure("refused")
        clock.advance(5)
        assert breaker.allow()
        breaker.record_success()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1
    assert "timeout" in warnings[0].getMessage()
    assert len(infos) == 1
    assert "answering again" in infos[0].getMessage()
    assert breaker.stats().outages == 1


@pytest.mark.parametrize(("threshold", "cooldown"), [(0, 1.0), (1, -1.0)])
def test_invalid_settings_are_refused(threshold: int, cooldown: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        CircuitBreaker("Redis", failure_threshold=threshold, cooldown_seconds=cooldown)
