"""A serving worker never unpickles the estimator: neither scikit-learn nor joblib is imported
by starting the app and answering (the artifact's stored parity probabilities check the forest),
nor SciPy, which numba would import for a version check and a BLAS probe (core/jit.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

SERVE_AND_LIST_MODULES = """
import asyncio, json, sys
from pathlib import Path
import httpx
from churn_mlops.api.app import create_app
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.settings import Settings
from tests.fixtures.lifespan import in_process_client

async def main():
    settings = Settings(model_dir=Path(sys.argv[1]), database_url="", environment="test",
                        auth_enabled=False)
    async with in_process_client(create_app(settings)) as client:
        response = await client.post("/predict", json={"features": EXAMPLE_FEATURES})
        assert response.status_code == 200, response.text
asyncio.run(main())
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_a_serving_worker_imports_neither_sklearn_nor_joblib_nor_scipy(artifact_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SERVE_AND_LIST_MODULES, str(artifact_dir)],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    modules = set(json.loads(result.stdout.splitlines()[-1]))
    assert "churn_mlops" in modules
    assert "numba" in modules
    assert modules & {"sklearn", "joblib", "scipy"} == set()
