"""A short bounded Locust run against a real seeded server (Locust runs as a subprocess: it
monkey-patches its process with gevent, so it is never imported here)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.servers import RunningServer, churn_service, start_server
from tests.load.run_loadtest import prepare_server_env, run_locust

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def seeded_server(
    artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, dict[str, str]]]:
    work = tmp_path_factory.mktemp("loadtest")
    env, credentials = prepare_server_env(work)
    spec = churn_service(artifact_dir, workers=1, env=env, name="loadtest")
    with start_server(spec, work / "logs") as server:
        yield server, credentials


def _locust(
    server: RunningServer, credentials: dict[str, str], csv: Path, p95_ms: float = 500.0
) -> int:
    return run_locust(
        server.url().rstrip("/"),
        users=4,
        spawn_rate=2,
        duration="6s",
        p95_ms=p95_ms,
        max_error_ratio=0.001,
        credentials=credentials,
        csv_prefix=csv,
    )


def _requests_by_name(csv: Path) -> dict[str, tuple[int, int]]:
    lines = Path(f"{csv}_stats.csv").read_text().splitlines()
    header = lines[0].split(",")
    name, count, failures = (
        header.index("Name"),
        header.index("Request Count"),
        header.index("Failure Count"),
    )
    rows = [line.split(",") for line in lines[1:]]
    return {row[name]: (int(row[count]), int(row[failures])) for row in rows}


def test_locust_run_logs_in_and_meets_the_slo(
    seeded_server: tuple[RunningServer, dict[str, str]], tmp_path: Path
) -> None:
    server, credentials = seeded_server
    assert _locust(server, credentials, tmp_path / "run") == 0
    requests = _requests_by_name(tmp_path / "run")
    assert requests["setup: /auth/login"] == (4, 0)
    for name in ("/predict", "/predict/batch (10 rows)", "/customers/{customer_id}"):
        assert requests[name][0] > 0
        assert requests[name][1] == 0, name


def test_locust_run_fails_past_the_p95_target(
    seeded_server: tuple[RunningServer, dict[str, str]], tmp_path: Path
) -> None:
    server, credentials = seeded_server
    assert _locust(server, credentials, tmp_path / "run", p95_ms=0.001) == 1


def test_locustfile_loads_bodies_of_dataset_customers() -> None:
    # The module loads in its own interpreter (as Locust loads it) and defines one user class.
    code = (
        "import tests.load.locustfile as f; "
        "print(f.ChurnApiUser.__name__, len(f.BODIES), f.BODIES[0]['customer_id'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ChurnApiUser", "4930", "8879-ZKJOF"]
