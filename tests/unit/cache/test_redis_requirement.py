"""The Redis requirement of integration and fault tests: fail under CI, skip elsewhere."""

from __future__ import annotations

import pytest

from benchmarks.servers import free_port
from tests.fixtures.redis_server import redis_answers, unavailable


def test_a_port_nobody_listens_on_does_not_answer() -> None:
    assert not redis_answers("127.0.0.1", free_port(), timeout=0.5)


def test_missing_redis_fails_the_test_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        unavailable("Redis does not answer")


@pytest.mark.parametrize("ci", [None, "false", ""])
def test_missing_redis_skips_the_test_outside_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="Redis does not answer"):
        unavailable("Redis does not answer")
