from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.kustomize import Manifest, render

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
# Every kustomization that is rendered and checked; the overlays are what gets applied.
KUSTOMIZATIONS = ("base", "overlays/dev", "overlays/production")


@pytest.fixture(scope="session", params=KUSTOMIZATIONS)
def kustomization(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def renders() -> dict[str, list[Manifest]]:
    return {name: render(K8S / name) for name in KUSTOMIZATIONS}


@pytest.fixture
def rendered(renders: dict[str, list[Manifest]], kustomization: str) -> list[Manifest]:
    return renders[kustomization]


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return document


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is not installed: the renderer is checked by its own tests only")
    return path
