"""What `GET /metrics` of the in-process app says after real requests."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from churn_mlops.api.app import create_app
from churn_mlops.data import TelcoDataset
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings
from tests.fixtures.requests import prediction_bodies

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def requests_total(samples: Samples, route: str, method: str, status: str) -> float:
    labels = frozenset({("route", route), ("method", method), ("status", status)})
    return samples.get(("churn_http_requests_total", labels), 0.0)


def test_metrics_count_requests_by_route_template(
    client: TestClient, dataset: TelcoDataset
) -> None:
    bodies = prediction_bodies(dataset, 3)
    for body in bodies:
        assert client.post("/predict", json=body).status_code == 200
    assert client.post("/predict", json={"features": {}}).status_code == 422
    assert client.post("/predict/batch", json=bodies).status_code == 200
    assert client.get("/model").status_code == 200
    assert client.get("/no/such/path").status_code == 404
    samples = scrape(client)
    assert requests_total(samples, "/predict", "POST", "200") == 3
    assert requests_total(samples, "/predict", "POST", "422") == 1
    assert requests_total(samples, "/predict/batch", "POST", "200") == 1
    assert requests_total(samples, "/model", "GET", "200") == 1
    # Never the raw path: unknown paths share one label value.
    assert requests_total(samples, "unmatched", "GET", "404") == 1
    assert not any("/no/such/path" in str(labels) for _, labels in samples)


def test_metrics_and_health_probes_are_not_counted(client: TestClient) -> None:
    for path in ("/health/live", "/health/ready", "/metrics", "/metrics"):
        assert client.get(path).status_code == 200
    samples = scrape(client)
    counted = [labels for name, labels in samples if name == "churn_http_requests_total"]
    assert counted == []


def test_metrics_show_cache_hits_batches_and_model_calls(
    client: TestClient, dataset: TelcoDataset
) -> None:
    body = prediction_bodies(dataset, 1)[0]
    for _ in range(3):
        assert client.post("/predict", json=body).status_code == 200
    samples = scrape(client)
    l1 = frozenset({("level", "l1")})
    assert samples[("churn_cache_misses_total", l1)] == 1
    assert samples[("churn_cache_hits_total", l1)] == 2
    assert samples[("churn_cache_entries", l1)] == 1
    # The warm-up and the one miss reached the model, one row each.
    assert samples[("churn_model_inference_seconds_count", frozenset())] == 2
    assert samples[("churn_model_batch_size_rows_sum", frozenset())] == 2
    assert samples[("churn_batch_queue_wait_seconds_count", frozenset())] == 1
    assert samples[("churn_requests_shed_total", frozenset())] == 0
    assert samples[("churn_http_requests_in_flight", frozenset())] == 0


def test_every_response_carries_a_request_id(client: TestClient, dataset: TelcoDataset) -> None:
    body = prediction_bodies(dataset, 1)[0]
    fast = client.post("/predict", json=body)
    routed = client.get("/model")
    ids = {fast.headers["x-request-id"], routed.headers["x-request-id"]}
    assert len(ids) == 2
    assert all(re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", value) for value in ids)


def test_request_id_of_the_client_is_returned(client: TestClient, dataset: TelcoDataset) -> None:
    body = prediction_bodies(dataset, 1)[0]
    headers = {"X-Request-ID": "trace-42.a"}
    assert client.post("/predict", json=body, headers=headers).headers["x-request-id"] == (
        "trace-42.a"
    )
    assert client.get("/model", headers=headers).headers["x-request-id"] == "trace-42.a"


def test_unusable_request_id_is_replaced(client: TestClient) -> None:
    response = client.get("/model", headers={"X-Request-ID": "a b\\nforged log line"})
    assert response.headers["x-request-id"] != "a b\\nforged log line"
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", response.headers["x-request-id"])


def test_metrics_disabled_removes_the_endpoint(
    settings: Settings, artifact: ModelArtifact, artifact_dir: Path
) -> None:
    app = create_app(settings.model_copy(update={"metrics_enabled": False}), artifact)
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 404
        assert app.runtime is not None
        assert app.runtime.metrics is None


class _LogWriter:
    def stats(self) -> SimpleNamespace:
        return SimpleNamespace(
            queue_depth=7, rows_flushed=40, rows_spilled=2, rows_replayed=1, retries=5
        )


def test_metrics_read_the_db_pool_and_prediction_log_the_app_holds(client: TestClient) -> None:
    state = client.app.runtime  # type: ignore[attr-defined]
    saved = state.database, state.prediction_log
    state.database = SimpleNamespace(connections_in_use=lambda: 3)
    state.prediction_log = _LogWriter()
    try:
        samples = scrape(client)
    finally:
        state.database, state.prediction_log = saved
    none: frozenset[tuple[str, str]] = frozenset()
    assert samples[("churn_db_pool_connections_in_use", none)] == 3
    assert samples[("churn_prediction_log_queue_depth", none)] == 7
    assert samples[("churn_prediction_log_rows_flushed_total", none)] == 40
    assert samples[("churn_prediction_log_rows_spilled_total", none)] == 2
    assert samples[("churn_prediction_log_rows_replayed_total", none)] == 1
    assert samples[("churn_prediction_log_retries_total", none)] == 5
