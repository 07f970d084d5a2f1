"""The HTTP A/B driver: its plan, its table, a real run against two servers with wrk, and the
local PostgreSQL's CPU it reads."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from pathlib import Path

import asyncpg
import orjson
import pytest

from benchmarks.http_ab import ABRun, ab_plan, ab_table, run_ab
from benchmarks.load import Wrk, write_bodies
from benchmarks.servers import bench_servers, postgres_cpu_seconds, start_server
from churn_mlops.data import TelcoDataset
from tests.fixtures.load_results import load_result
from tests.fixtures.postgres import require_postgres
from tests.fixtures.requests import prediction_bodies


def test_ab_plan_runs_the_servers_back_to_back_at_each_level_the_first_rotating() -> None:
    assert ab_plan(["a", "b"], [1, 32], 2) == [
        ("a", 1, 0),
        ("b", 1, 0),
        ("b", 32, 0),
        ("a", 32, 0),
        ("a", 1, 1),
        ("b", 1, 1),
        ("b", 32, 1),
        ("a", 32, 1),
    ]


def test_ab_table_gives_medians_and_the_ratio_of_the_first_to_the_second() -> None:
    runs = [
        ABRun("on", 32, 0, load_result(9_000, 1.0), 110.0, warmup_requests=100, database_cpu_us=7),
        ABRun("off", 32, 0, load_result(10_000, 1.0), 100.0),
        ABRun("off", 32, 1, load_result(12_000, 2.0), 100.0),
        ABRun("on", 32, 1, load_result(11_000, 2.0), 110.0, database_cpu_us=9),
    ]
    lines = ab_table(runs, "on", "off")
    assert lines[2] == "| on | 1,000 | 1.50 | 6.00 | 110.0 | 8.0 | 2 |"
    assert lines[3] == "| off | 1,100 | 1.50 | 6.00 | 100.0 | 0.0 | 2 |"
    assert lines[-1] == "on / off: 0.909 of the RPS; +10.0 us of server CPU per request (+10.0 %)."
    assert runs[0].answered == 9_100


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_run_ab_measures_each_server_in_turn_with_its_own_cpu(
    wrk: Wrk, tmp_path: Path, dataset: TelcoDataset
) -> None:
    bodies = write_bodies(
        tmp_path / "bodies.jsonl", (orjson.dumps(b) for b in prediction_bodies(dataset, 20))
    )
    specs = bench_servers(None, workers=1)
    logged: list[str] = []
    with ExitStack() as stack:
        servers = {
            name: stack.enter_context(start_server(specs[name], tmp_path / "logs"))
            for name in ("asgi", "fastapi")
        }
        runs = run_ab(
            wrk,
            servers,
            bodies,
            connections=[2],
            rounds=2,
            duration_s=1,
            warmup_s=1,
            log=logged.append,
        )
    assert [(r.server, r.round) for r in runs] == [
        ("asgi", 0),
        ("fastapi", 0),
        ("fastapi", 1),
        ("asgi", 1),
    ]
    assert all(r.result.requests > 0 and r.result.failed == 0 for r in runs)
    assert all(r.warmup_requests > 0 and r.cpu_us > 0 for r in runs)
    assert len(logged) == 4


@pytest.mark.timeout(60)
def test_postgres_cpu_grows_with_the_work_the_local_database_does() -> None:
    url = require_postgres()

    async def busy() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.fetchval("SELECT count(*) FROM generate_series(1, 5000000)")
        finally:
            await connection.close()

    before = postgres_cpu_seconds()
    asyncio.run(busy())
    assert postgres_cpu_seconds() - before >= 0.05  # about 0.3 s of a backend's CPU here
