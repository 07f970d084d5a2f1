"""tests/load/k6-test.js: valid JavaScript, the course's stages and thresholds, real routes and
real request bodies."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from churn_mlops.api.app import create_app
from churn_mlops.core.request_models import request_models
from churn_mlops.data import Dataset
from churn_mlops.data.telco_example import EXAMPLE_CUSTOMER_ID, PredictRequest
from churn_mlops.settings import Settings
from tests.load.bodies import main as bodies_main

SCRIPT = Path(__file__).with_name("k6-test.js")


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is not installed: it checks the k6 script's syntax")
        pytest.skip("node is not installed")
    return node


@pytest.mark.timeout(60)
def test_k6_script_is_valid_javascript(tmp_path: Path) -> None:
    # An ES module (k6 scripts import k6/http): node parses it as one by its .mjs name.
    module = tmp_path / "k6-test.mjs"
    module.write_text(SCRIPT.read_text())
    result = subprocess.run(
        [_node(), "--check", str(module)], capture_output=True, text=True, timeout=50, check=False
    )
    assert result.returncode == 0, result.stderr


def test_k6_script_has_the_course_stages_and_thresholds() -> None:
    text = SCRIPT.read_text()
    stages = re.findall(r"\{ duration: '(\w+)', target: (\d+) \}", text)
    assert stages == [("2m", "50"), ("5m", "50"), ("2m", "100"), ("5m", "100"), ("2m", "0")]
    assert "http_req_duration: ['p(95)<500']" in text
    assert "errors: ['rate<0.01']" in text


def test_k6_script_calls_routes_the_api_has() -> None:
    text = SCRIPT.read_text()
    called = set(re.findall(r"\$\{BASE_URL\}(/[a-z/]+)", text))
    app = create_app(Settings(environment="test", auth_enabled=False, database_url=""))
    paths = set(app.openapi()["paths"])
    assert called == {"/predict", "/health/ready"}
    assert called <= paths


def test_k6_script_reads_its_bodies_from_the_file_bodies_py_writes() -> None:
    assert "JSON.parse(open(__ENV.BODIES || './k6-bodies.json'))" in SCRIPT.read_text()


def test_the_bodies_file_holds_valid_requests_of_the_telco_model(tmp_path: Path) -> None:
    out = tmp_path / "bodies.json"
    assert bodies_main(["--out", str(out), "--limit", "40"]) == 0
    bodies = json.loads(out.read_text())
    assert len(bodies) == 40
    assert bodies[0]["customer_id"] == EXAMPLE_CUSTOMER_ID
    for body in bodies:
        PredictRequest.model_validate(body)


def test_the_bodies_file_follows_another_schema(own_data_dir: Path, own_dataset: Dataset) -> None:
    out = own_data_dir / "k6-bodies.json"
    data, schema = own_data_dir / "customers.csv", own_data_dir / "schema.yaml"
    assert bodies_main(["--out", str(out), "--data", str(data), "--schema", str(schema)]) == 0
    bodies = json.loads(out.read_text())
    request = request_models(own_dataset.schema).request
    assert set(bodies[0]["features"]) == set(own_dataset.schema.names)
    assert any(body["features"]["plan"] is None for body in bodies)
    for body in bodies:
        request.model_validate(body)
