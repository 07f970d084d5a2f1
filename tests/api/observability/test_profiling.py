"""cProfile helpers and `?profile=1` per-request profiling."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from churn_mlops.api.app import create_app
from churn_mlops.data import TelcoDataset
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.observability.profiling import profile_context, profile_function, wants_profile
from churn_mlops.settings import Settings
from tests.fixtures.requests import prediction_bodies
from tests.fixtures.security import security_settings, with_test_key


def busy_work(n: int) -> int:
    return sum(i * i for i in range(n))


def test_profile_context_reports_top_functions_by_cumulative_time() -> None:
    stream = io.StringIO()
    with profile_context("squares", top=5, stream=stream) as report:
        busy_work(20_000)
    assert report.name == "squares"
    assert len(report.top) == 5
    cumulative = [row.cumulative_seconds for row in report.top]
    assert cumulative == sorted(cumulative, reverse=True)
    assert any("busy_work" in row.function for row in report.top)
    assert stream.getvalue().startswith("squares\n")
    assert "cumulative" in stream.getvalue()


def test_profile_context_quiet_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with profile_context("quiet", quiet=True) as report:
        busy_work(1_000)
    assert capsys.readouterr().err == ""
    assert "busy_work" in report.text


def test_profile_function_profiles_each_call_and_keeps_the_result() -> None:
    stream = io.StringIO()

    @profile_function(top=3, stream=stream)
    def compute(n: int) -> int:
        return busy_work(n)

    assert compute(1_000) == busy_work(1_000)
    assert "compute" in stream.getvalue()
    assert len(compute.last_report.top) == 3  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_profile_function_wraps_coroutines() -> None:
    stream = io.StringIO()

    @profile_function(stream=stream)
    async def compute(n: int) -> int:
        return busy_work(n)

    assert await compute(500) == busy_work(500)
    assert "busy_work" in stream.getvalue()


def test_bare_profile_function_decorator(capsys: pytest.CaptureFixture[str]) -> None:
    @profile_function
    def compute() -> int:
        return busy_work(100)

    assert compute() == busy_work(100)
    assert "compute" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"profile=1", True),
        (b"a=2&profile=true", True),
        (b"profile=0", False),
        (b"profiles=1", False),
        (b"", False),
    ],
)
def test_wants_profile_reads_the_query(query: bytes, expected: bool) -> None:
    assert wants_profile(query) is expected


def _client(settings: Settings, artifact: ModelArtifact) -> TestClient:
    return TestClient(create_app(settings, artifact))


@pytest.fixture
def open_settings(artifact_dir: Path) -> Settings:
    return Settings(
        model_dir=artifact_dir,
        environment="test",
        auth_enabled=False,
        database_url="",
        profiling_enabled=True,
        profiling_without_auth=True,
    )


@pytest.fixture
def open_client(open_settings: Settings, artifact: ModelArtifact) -> Iterator[TestClient]:
    with _client(open_settings, artifact) as client:
        yield client


def test_profile_query_returns_the_pyinstrument_report_of_the_request(
    open_client: TestClient, dataset: TelcoDataset
) -> None:
    body = prediction_bodies(dataset, 1)[0]
    response = open_client.post("/predict?profile=1", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["x-profiled-status"] == "200"
    assert "pyinstrument" in response.text


def test_profile_query_on_a_routed_request_keeps_its_status(open_client: TestClient) -> None:
    response = open_client.get("/customers/none?profile=1")
    assert response.headers["x-profiled-status"] == "503"  # no database in these tests
    assert "pyinstrument" in response.text


def test_requests_without_the_query_are_answered_normally(
    open_client: TestClient, dataset: TelcoDataset
) -> None:
    response = open_client.post("/predict", json=prediction_bodies(dataset, 1)[0])
    assert response.headers["content-type"] == "application/json"
    assert "x-profiled-status" not in response.headers


def test_profiling_without_authentication_is_refused_by_default(
    open_settings: Settings, artifact: ModelArtifact
) -> None:
    settings = open_settings.model_copy(update={"profiling_without_auth": False})
    with _client(settings, artifact) as client:
        response = client.get("/model?profile=1")
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert "CHURN_PROFILING_WITHOUT_AUTH" in response.json()["detail"]


def test_profile_query_is_ignored_when_profiling_is_off(
    open_settings: Settings, artifact: ModelArtifact
) -> None:
    settings = open_settings.model_copy(update={"profiling_enabled": False})
    with _client(settings, artifact) as client:
        response = client.get("/model?profile=1")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"


def test_profiling_needs_the_admin_scope(
    artifact_dir: Path, artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    settings = Settings(
        model_dir=artifact_dir,
        environment="test",
        database_url="",
        profiling_enabled=True,
        **security_settings(),
    )
    app = create_app(settings, artifact)
    body = prediction_bodies(dataset, 1)[0]
    with TestClient(app) as client:
        anonymous = client.post("/predict?profile=1", json=body)
        reader = client.post(
            "/predict?profile=1",
            json=body,
            headers={"X-API-Key": with_test_key(app, ["predict", "read"], name="reader")},
        )
        admin = client.post(
            "/predict?profile=1",
            json=body,
            headers={"X-API-Key": with_test_key(app, ["predict", "admin"], name="admin")},
        )
    assert anonymous.status_code == 401
    assert reader.status_code == 403
    assert "admin" in reader.json()["detail"]
    assert admin.status_code == 200
    assert admin.headers["x-profiled-status"] == "200"
