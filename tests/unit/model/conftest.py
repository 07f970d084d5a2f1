from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from churn_mlops.model.registry import LocalRegistry


@pytest.fixture
def registry(registered_root: Path, tmp_path: Path) -> LocalRegistry:
    root = tmp_path / "models"
    shutil.copytree(registered_root, root)
    return LocalRegistry(root)
