"""CPU per request of the whole app in process, for whichever `churn_mlops` is first on the
path: the child process of `python -m benchmarks tree-ab --in-process`.

    PYTHONPATH=<tree>/src:<repo> python -m benchmarks.tree_probe MODEL_DIR PATH REQUESTS BLOCKS

Prints a JSON list: CPU microseconds per request of each block of REQUESTS raw-ASGI calls to
PATH (`/predict` or `/predict/batch` with one row), authenticated, metrics on, cache and
database off. Trees from before the layout of `api/` and `core/` name the app module
`serving.app` and the example `schemas`: both are looked up, so an older checkout can be the
baseline.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.asgi_client import serving
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.security.authenticator import MemoryKeySource
from churn_mlops.settings import Settings

PEPPER = "tree-probe-pepper-" + "0" * 32
WARMUP_REQUESTS = 500
DISTINCT_BODIES = 2_000


def _first_module(*names: str) -> Any:
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(f"none of {names} in this tree")


def _app_with_key(model_dir: Path) -> tuple[Any, str]:
    settings = Settings(
        model_dir=model_dir,
        environment="test",
        database_url="",
        cache_enabled=False,
        metrics_enabled=True,
        api_key_pepper=PEPPER,
        jwt_secret="tree-probe-jwt-" + "0" * 64,
        rate_limit_per_second=1e9,
        rate_limit_burst=1e9,
    )
    create_app = _first_module("churn_mlops.api.app", "churn_mlops.serving.app").create_app
    app = create_app(settings, ModelArtifact.load(model_dir))
    keys = MemoryKeySource(PEPPER.encode())
    key = keys.add("probe", ["predict"])
    use_keys = getattr(app, "use_keys", None) or app.state.security.use_keys
    use_keys(keys)
    return app, key


def _bodies(path: str) -> list[bytes]:
    example = _first_module(
        "churn_mlops.data.telco_example", "churn_mlops.core.features", "churn_mlops.schemas"
    ).EXAMPLE_FEATURES
    bodies = []
    for i in range(DISTINCT_BODIES):
        features = {**example, "tenure": i % 72, "monthly_charges": 20.0 + i % 100}
        row = {"customer_id": f"probe-{i}", "features": features}
        bodies.append(orjson.dumps([row] if path == "/predict/batch" else row))
    return bodies


async def probe(model_dir: Path, path: str, requests: int, blocks: int) -> list[float]:
    app, key = _app_with_key(model_dir)
    bodies = _bodies(path)
    async with serving(app, [(b"x-api-key", key.encode())]) as running:
        for body in bodies[:WARMUP_REQUESTS]:
            await running.post(path, body)
        timings = []
        for _ in range(blocks):
            started = time.process_time()
            for i in range(requests):
                await running.post(path, bodies[i % len(bodies)])
            timings.append((time.process_time() - started) / requests * 1e6)
    return timings


if __name__ == "__main__":
    model, route, count, block_count = sys.argv[1:5]
    print(json.dumps(asyncio.run(probe(Path(model), route, int(count), int(block_count)))))
