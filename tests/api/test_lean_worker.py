"""A serving worker never unpickles the estimator: neither scikit-learn nor joblib is imported
by starting the app and answering (the artifact's stored parity probabilities check the forest),
nor SciPy, which numba would import for a version check and a BLAS probe (core/jit.py). With
the kernels compiled ahead of time (core/native.py; `make install` builds them), it imports
neither numba nor llvmlite either: /predict, a V2 binary inference and reason codes all run on
the compiled extension."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.kernels import require_compiled_kernels

pytestmark = pytest.mark.timeout(120)

SERVE_AND_LIST_MODULES = """
import asyncio, json, struct, sys
from pathlib import Path
import httpx
from churn_mlops.api.app import create_app
from churn_mlops.data.telco_example import (
    CATEGORICAL_FEATURES, EXAMPLE_FEATURES, FEATURE_NAMES, INTEGER_FEATURES,
)
from churn_mlops.settings import Settings
from tests.fixtures.lifespan import in_process_client

def binary_infer_body():
    inputs, data = [], b""
    for name in FEATURE_NAMES:
        value = EXAMPLE_FEATURES[name]
        if name in CATEGORICAL_FEATURES:
            raw, datatype = struct.pack("<I", len(value.encode())) + value.encode(), "BYTES"
        elif name in INTEGER_FEATURES:
            raw, datatype = struct.pack("<q", value), "INT64"
        else:
            raw, datatype = struct.pack("<d", value), "FP64"
        inputs.append({"name": name, "shape": [1], "datatype": datatype,
                       "parameters": {"binary_data_size": len(raw)}})
        data += raw
    header = json.dumps({"inputs": inputs}).encode()
    return header + data, len(header)

async def main():
    settings = Settings(model_dir=Path(sys.argv[1]), database_url="", environment="test",
                        auth_enabled=False)
    async with in_process_client(create_app(settings)) as client:
        response = await client.post("/predict", json={"features": EXAMPLE_FEATURES})
        assert response.status_code == 200, response.text
        response = await client.post(
            "/predict", json={"features": EXAMPLE_FEATURES, "explain": True}
        )
        assert response.status_code == 200, response.text
        assert response.json()["reasons"]["features"], response.text
        body, header_length = binary_infer_body()
        response = await client.post(
            "/v2/models/churn/infer", content=body,
            headers={"Inference-Header-Content-Length": str(header_length),
                     "Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 200, response.text
asyncio.run(main())
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def _serve_and_list_modules(artifact_dir: Path) -> set[str]:
    environment = {k: v for k, v in os.environ.items() if k != "CHURN_KERNELS"}
    result = subprocess.run(
        [sys.executable, "-c", SERVE_AND_LIST_MODULES, str(artifact_dir)],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    modules: set[str] = set(json.loads(result.stdout.splitlines()[-1]))
    assert "churn_mlops" in modules
    return modules


def test_a_serving_worker_imports_neither_sklearn_nor_joblib_nor_scipy(artifact_dir: Path) -> None:
    modules = _serve_and_list_modules(artifact_dir)
    assert modules & {"sklearn", "joblib", "scipy"} == set()


def test_a_serving_worker_imports_neither_numba_nor_llvmlite(artifact_dir: Path) -> None:
    require_compiled_kernels()  # fails in CI, where `make test` builds them at install
    modules = _serve_and_list_modules(artifact_dir)
    assert modules & {"numba", "llvmlite"} == set()
