"""What the deployment files rely on the service for, in one place."""

from __future__ import annotations

from churn_mlops.settings import Settings

# The metric names `GET /metrics` exports. A stand-in until the metrics endpoint exists: replace
# it with a scrape of the real endpoint (the app in-process), so that the Prometheus Adapter rule
# and the HPA can only name series the service really exports.
EXPORTED_METRICS: frozenset[str] = frozenset({"churn_http_requests_total"})

# The server's graceful-shutdown budget when Settings has no `graceful_shutdown_seconds` field yet
# (CHURN_GRACEFUL_SHUTDOWN_SECONDS); from then on its default is used.
GRACEFUL_SHUTDOWN_SECONDS_FALLBACK = 20.0

# Environment variables the deployment sets that are not settings, and who reads them.
NON_SETTING_ENV: dict[str, str] = {
    "NUMBA_CACHE_DIR": "numba: where it caches the compiled model kernels",
}


def settings_env_names() -> frozenset[str]:
    """The environment variable of every field of `churn_mlops.settings.Settings`."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return frozenset(f"{prefix}{name}".upper() for name in Settings.model_fields)


def unknown_env_names(names: set[str] | frozenset[str]) -> list[str]:
    """The names among `names` that are neither a setting nor a known non-setting variable."""
    return sorted(name for name in names - settings_env_names() if name not in NON_SETTING_ENV)


def graceful_shutdown_seconds(configured: str | None = None) -> float:
    """The server's graceful-shutdown budget: `configured` if set, else the setting's default."""
    if configured is not None:
        return float(configured)
    field = Settings.model_fields.get("graceful_shutdown_seconds")
    if field is None:
        return GRACEFUL_SHUTDOWN_SECONDS_FALLBACK
    return float(field.default)
