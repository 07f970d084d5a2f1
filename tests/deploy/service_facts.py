"""What the deployment files rely on the service for, in one place."""

from __future__ import annotations

import functools
from typing import Any

from fastapi.testclient import TestClient

from churn_mlops.api.app import create_app
from churn_mlops.data import load_telco_csv
from churn_mlops.model.training import train_model
from churn_mlops.observability.metrics import exported_names
from churn_mlops.settings import Settings
from tests.conftest import QUICK_TRAINING


@functools.cache
def exported_metrics() -> frozenset[str]:
    """The metric (and sample) names `GET /metrics` of the real app exports after a request.

    The app runs in-process on a quickly trained model; `/predict` with an empty body answers
    422, a counted request like any other. `EXPORTED_METRICS` is this set, so that the
    Prometheus Adapter rule and the HPA can only name series the service exports.
    """
    settings = Settings(environment="test", auth_enabled=False, database_url="")
    artifact = train_model(load_telco_csv(), QUICK_TRAINING).artifact
    with TestClient(create_app(settings, artifact)) as client:
        client.post("/predict", content=b"{}", headers={"Content-Type": "application/json"})
        response = client.get("/metrics")
    response.raise_for_status()
    return exported_names(response.content)


def __getattr__(name: str) -> Any:
    # `EXPORTED_METRICS` is computed on first use, not when this module is imported.
    if name == "EXPORTED_METRICS":
        return exported_metrics()
    raise AttributeError(name)


# Environment variables the deployment sets that are not settings, and who reads them.
NON_SETTING_ENV: dict[str, str] = {
    "NUMBA_CACHE_DIR": "numba: where it caches the compiled model kernels",
    "PROMETHEUS_MULTIPROC_DIR": "prometheus-client: where the workers share their metric files "
    "(churn-mlops serve sets it from CHURN_METRICS_MULTIPROC_DIR)",
}


def settings_env_names() -> frozenset[str]:
    """The environment variable of every field of `churn_mlops.settings.Settings`."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return frozenset(f"{prefix}{name}".upper() for name in Settings.model_fields)


def unknown_env_names(names: set[str] | frozenset[str]) -> list[str]:
    """The names among `names` that are neither a setting nor a known non-setting variable."""
    return sorted(name for name in names - settings_env_names() if name not in NON_SETTING_ENV)


def setting_number(name: str, configured: str | None = None) -> float:
    """A numeric setting: `configured` (its environment value) if set, else its default."""
    if configured is not None:
        return float(configured)
    return float(Settings.model_fields[name].default)


def graceful_shutdown_seconds(configured: str | None = None) -> float:
    """The server's graceful-shutdown budget: `configured` if set, else the setting's default."""
    return setting_number("graceful_shutdown_seconds", configured)
