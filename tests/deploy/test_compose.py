"""deploy/docker-compose.yml and the files it mounts: a stack that comes up wired together."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.deploy.conftest import DEPLOY
from tests.deploy.service_facts import (
    graceful_shutdown_seconds,
    setting_number,
    unknown_env_names,
)

SERVICES = {"api", "postgres", "redis", "prometheus", "grafana"}
# The API: HTTP and the Open Inference Protocol over gRPC.
PUBLISHED = {"api": {8000, 8001}, "prometheus": {9090}, "grafana": {3000}}
# The course's tuned PostgreSQL settings, as deploy/postgres/postgresql.conf must carry them.
POSTGRES_SETTINGS = {
    "shared_buffers": "256MB",
    "effective_cache_size": "1GB",
    "work_mem": "4MB",
    "maintenance_work_mem": "64MB",
    "max_connections": "200",
    "wal_buffers": "16MB",
    "checkpoint_completion_target": "0.9",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
    "log_min_duration_statement": "1000",
    "log_line_prefix": "'%t [%p]: [%l-1] user=%u,db=%d '",
}


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either of compose's forms."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.partition("=")[::2] for item in env)
    return {key: str(value) for key, value in env.items()}


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path (relative to deploy/) of a service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            mounts[target] = source
    return mounts


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert match, f"unsupported duration {duration!r}"
    return int(match[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match[2]]


def postgres_conf() -> dict[str, str]:
    """The `name = value` lines of deploy/postgres/postgresql.conf, comments removed."""
    settings = {}
    for line in (DEPLOY / "postgres" / "postgresql.conf").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = (part.strip() for part in line.partition("="))
        if value.startswith("'"):
            settings[key] = value[: value.index("'", 1) + 1]
        else:
            settings[key] = value.split("#", 1)[0].strip()
    return settings


def test_compose_runs_the_five_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES


def test_compose_publishes_only_the_ui_ports_on_localhost(compose: dict[str, Any]) -> None:
    published: dict[str, set[int]] = {}
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            host_ip, host_port, container_port = str(port).split(":")
            assert host_ip == "127.0.0.1", f"{name} publishes {port} on every interface"
            assert host_port == container_port
            published.setdefault(name, set()).add(int(container_port))
    assert published == PUBLISHED


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck", {})
        assert check.get("test", ["NONE"])[0] in ("CMD", "CMD-SHELL"), f"{name}: no healthcheck"
        assert not check.get("disable", False)


def test_api_waits_for_healthy_postgres_and_redis(compose: dict[str, Any]) -> None:
    depends = compose["services"]["api"]["depends_on"]
    assert depends == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }


def test_api_healthcheck_asks_the_readiness_endpoint(compose: dict[str, Any]) -> None:
    check = " ".join(compose["services"]["api"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/health/ready" in check


def test_api_environment_names_are_real_settings(compose: dict[str, Any]) -> None:
    unknown = unknown_env_names(set(environment(compose["services"]["api"])))
    assert unknown == [], f"{unknown} are set but are not fields of churn_mlops Settings"


def test_api_connection_urls_reach_the_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = environment(services["api"])
    redis = urlsplit(env["CHURN_REDIS_URL"])
    assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379)


def test_api_root_filesystem_is_read_only_with_writable_tmp_and_var(
    compose: dict[str, Any],
) -> None:
    api = compose["services"]["api"]
    assert api["read_only"] is True
    assert set(api["tmpfs"]) >= {"/tmp", "/app/var"}  # noqa: S108 - a private tmpfs
    assert api["cap_drop"] == ["ALL"]


def test_api_stop_grace_outlasts_the_graceful_shutdown(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    env = environment(api)
    shutdown = graceful_shutdown_seconds(env.get("CHURN_GRACEFUL_SHUTDOWN_SECONDS"))
    log_flush = setting_number(
        "prediction_log_shutdown_timeout_seconds",
        env.get("CHURN_PREDICTION_LOG_SHUTDOWN_TIMEOUT_SECONDS"),
    )
    assert seconds(api["stop_grace_period"]) > shutdown + log_flush


def test_postgres_runs_with_the_tuned_conf(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    mounts = bind_mounts(postgres)
    config_file = next(a for a in postgres["command"] if a.startswith("config_file="))
    target = config_file.partition("=")[2]
    assert mounts[target] == "./postgres/postgresql.conf"
    assert (DEPLOY / mounts[target]).is_file()


def test_postgres_conf_carries_the_tuned_settings() -> None:
    conf = postgres_conf()
    assert {key: conf.get(key) for key in POSTGRES_SETTINGS} == POSTGRES_SETTINGS
    # Replacing the image's file drops its listen_addresses = '*': the API could not connect.
    assert conf["listen_addresses"] == "'*'"


def test_prometheus_scrapes_the_api_and_loads_the_alert_rules(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    mounts = bind_mounts(prometheus)
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "churn-api"]
    assert job["scrape_interval"] == "5s"
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["static_configs"][0]["targets"] == ["api:8000"]
    assert mounts["/etc/prometheus"] == "./prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    [rules] = config["rule_files"]
    assert PurePosixPath(rules) == PurePosixPath("/etc/prometheus/alerts.yml")


def test_grafana_provisions_the_datasource_and_the_dashboard_folder(
    compose: dict[str, Any],
) -> None:
    grafana = compose["services"]["grafana"]
    mounts = bind_mounts(grafana)
    provisioning = DEPLOY / mounts["/etc/grafana/provisioning"]
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus"
    assert urlsplit(source["url"]).hostname == "prometheus"
    assert {urlsplit(source["url"]).port} == PUBLISHED["prometheus"]
    [provider] = yaml.safe_load((provisioning / "dashboards" / "churn.yml").read_text())[
        "providers"
    ]
    assert mounts[provider["options"]["path"]] == "./grafana"
