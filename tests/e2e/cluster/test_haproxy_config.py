"""deploy/haproxy/haproxy.cfg is valid for HAProxy, and retries only what never reached a
server: a POST /predict that an instance received may have been answered and logged there."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.haproxy import HAPROXY_CONFIG, SERVERS, check_config, haproxy_env

pytestmark = pytest.mark.timeout(60)


def directives() -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in HAPROXY_CONFIG.read_text().splitlines())
    return [line for line in lines if line]


def test_haproxy_accepts_the_config(tmp_path: Path) -> None:
    ports = {name: 18_001 + n for n, name in enumerate(SERVERS)}
    result = check_config(haproxy_env(ports, 18_080, 18_081, tmp_path / "haproxy.sock"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr


def test_requests_are_retried_only_when_their_connection_failed() -> None:
    retries = [line for line in directives() if line.startswith("retry-on")]
    assert retries == ["retry-on conn-failure"]
    assert "option redispatch 1" in directives()


def test_instances_are_checked_on_readiness() -> None:
    assert "http-check send meth GET uri /health/ready ver HTTP/1.1 hdr Host churn" in directives()
    assert "http-check expect status 200" in directives()
    servers = [line.split()[1] for line in directives() if line.startswith("server ")]
    assert servers == list(SERVERS)
