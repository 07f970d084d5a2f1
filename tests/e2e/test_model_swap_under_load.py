"""Zero-downtime promotion through a real `churn-mlops serve` with two workers: ten
promotions back and forth (half through the registry as the CLI does, half through
`PUT /model/champion`) while 32 clients send distinct rows."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.servers import free_port
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.registry import LocalRegistry
from tests.fixtures.serve import CLI, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CLIENTS = 32
PROMOTIONS = 10
SECONDS_BETWEEN = 3.0
BOUND_SECONDS = 2.0  # the documented bound: a poll (0.5 s) plus the new version's load


@pytest.fixture
def registry(registered_root: Path, tmp_path: Path, artifact: ModelArtifact) -> LocalRegistry:
    root = tmp_path / "models"
    shutil.copytree(registered_root, root)
    registry = LocalRegistry(root)
    registry.promote(artifact.version)
    return registry


@pytest.fixture
def server(registry: LocalRegistry, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "CHURN_ENVIRONMENT": "test",
        "CHURN_AUTH_ENABLED": "false",
        "CHURN_DATABASE_URL": "",
        "CHURN_MODEL_REGISTRY_DIR": str(registry.root),
        "CHURN_MODEL_DIR": "",
    }
    env.pop("CHURN_MODEL_DIR")  # follow the registry, not a directory
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, process, exit_details=lambda: (tmp_path / "serve.log").read_text())
        yield base_url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


Answer = tuple[float, int, str | None]
"""When it arrived (monotonic seconds), its status, the model version that answered."""


async def client_loop(base_url: str, client_id: int, stop: asyncio.Event, answers: list[Answer]):
    features = dict(EXAMPLE_FEATURES)
    n = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        while not stop.is_set():
            n += 1
            # Distinct rows: no answer comes from the cache of an earlier identical row.
            features["monthly_charges"] = 20.0 + (client_id * 100_003 + n) % 10_000 / 100
            features["tenure"] = n % 72
            body = {"customer_id": f"load-{client_id}-{n}", "features": features}
            response = await http.post("/predict", json=body)
            version = response.json().get("model_version") if response.status_code == 200 else None
            answers.append((time.monotonic(), response.status_code, version))


async def promote_back_and_forth(
    base_url: str, registry: LocalRegistry, versions: tuple[str, str]
) -> list[tuple[float, str]]:
    """Ten promotions; (when each was made, the version promoted)."""
    made = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for index in range(PROMOTIONS):
            await asyncio.sleep(SECONDS_BETWEEN)
            version = versions[(index + 1) % 2]
            if index % 2:
                response = await http.put("/model/champion", json={"version": version})
                assert response.status_code == 200, response.text
            else:
                await asyncio.to_thread(registry.promote, version)
            made.append((time.monotonic(), version))
        await asyncio.sleep(SECONDS_BETWEEN)
    return made


async def run_load(
    base_url: str, registry: LocalRegistry, versions: tuple[str, str]
) -> tuple[list[Answer], list[tuple[float, str]]]:
    stop = asyncio.Event()
    answers: list[Answer] = []
    clients = [asyncio.create_task(client_loop(base_url, n, stop, answers)) for n in range(CLIENTS)]
    try:
        promotions = await promote_back_and_forth(base_url, registry, versions)
    finally:
        stop.set()
        await asyncio.gather(*clients)
    return answers, promotions


def test_ten_promotions_under_load_lose_nothing_and_settle_within_the_bound(
    server: str, registry: LocalRegistry, artifact: ModelArtifact, other_artifact_dir: Path
) -> None:
    v1, v2 = artifact.version, ModelArtifact.load(other_artifact_dir).version
    answers, promotions = asyncio.run(run_load(server, registry, (v1, v2)))

    statuses = {status for _, status, _ in answers}
    assert statuses == {200}, f"non-2xx answers: {statuses}"
    assert {version for _, _, version in answers} <= {v1, v2}
    late = []
    ends = [at for at, _ in promotions[1:]] + [float("inf")]
    for (promoted_at, version), next_at in zip(promotions, ends, strict=True):
        window = [a for a in answers if promoted_at + BOUND_SECONDS < a[0] < next_at]
        assert window, "no answer arrived between two promotions"
        late.extend(a for a in window if a[2] != version)
        old = [
            a[0] - promoted_at for a in answers if promoted_at < a[0] < next_at and a[2] != version
        ]
        print(
            f"promotion to {version}: last answer by the old version "
            f"after {max(old, default=0):.3f} s"
        )
    assert late == [], f"{len(late)} answers from the old version more than 2 s after a promotion"
    print(f"{len(answers)} answers, all 200, during {PROMOTIONS} promotions")
