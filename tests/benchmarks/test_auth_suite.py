from __future__ import annotations

from pathlib import Path

from benchmarks.auth_report import render
from benchmarks.auth_suite import SERVERS, auth_servers
from benchmarks.http_ab import ABRun, ab_plan
from benchmarks.load import LoadResult
from benchmarks.servers import BenchCredentials

CREDENTIALS = BenchCredentials({"CHURN_DATABASE_URL": "sqlite:///x.db"}, "churn_key")


def _result(rps: float) -> LoadResult:
    return LoadResult(
        requests=int(rps * 10),
        duration_s=10.0,
        errors={"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0},
        statuses={200: int(rps * 10)},
        latency_ms={"p50": 1.0, "p99": 2.0},
    )


def test_plan_runs_both_servers_back_to_back_alternating_first() -> None:
    assert ab_plan(SERVERS, [32], 3) == [
        ("auth-on", 32, 0),
        ("auth-off", 32, 0),
        ("auth-off", 32, 1),
        ("auth-on", 32, 1),
        ("auth-on", 32, 2),
        ("auth-off", 32, 2),
    ]


def test_auth_servers_differ_only_in_authentication() -> None:
    specs = auth_servers(Path("/models/m"), CREDENTIALS)
    on, off = specs["auth-on"], specs["auth-off"]
    assert on.api_key == "churn_key"
    assert off.api_key is None
    assert on.argv == off.argv
    assert {k: v for k, v in off.env.items() if k != "CHURN_AUTH_ENABLED"} == dict(on.env)
    assert off.env["CHURN_AUTH_ENABLED"] == "false"
    assert on.env["CHURN_CACHE_ENABLED"] == on.env["CHURN_PREDICTION_LOG_ENABLED"] == "false"


def test_render_gives_medians_and_their_ratio() -> None:
    runs = [
        ABRun("auth-on", 32, r, _result(rps), 0.0) for r, rps in enumerate([900.0, 1000.0, 1100.0])
    ] + [
        ABRun("auth-off", 32, r, _result(rps), 0.0) for r, rps in enumerate([1000.0, 950.0, 1050.0])
    ]
    meta = {
        "command": "python -m benchmarks auth",
        "started": "now",
        "rounds": 3,
        "duration_s": 10,
        "warmup_s": 2,
        "model_version": "v1",
    }
    report = render(runs, [32], {"auth-on": 1.5, "auth-off": 0.5}, meta)
    # Rounds: 900/1000, 1000/950, 1100/1050: median ratio 1000/950.
    assert "| 32 | 1,000 | 1,000 | 1.000 | 1.048 |" in report
    assert "| 32 | 2 | 1,000 | 950 | 1.053 | 1.00 | 1.00 | 2.00 | 2.00 |" in report
    assert "1.50 µs with authentication, 0.50 µs without" in report
    assert "Non-2xx or failed requests: none." in report
