from __future__ import annotations

from churn_mlops.bench.plan import SERVERS, Run, plan_runs


def _predict_order(runs: list[Run], connections: int) -> list[str]:
    return [r.server for r in runs if r.scenario == "predict" and r.connections == connections]


def test_plan_runs_rotates_which_server_goes_first_at_each_connection_level() -> None:
    runs = plan_runs(SERVERS, [1, 32, 128])
    assert _predict_order(runs, 1) == ["naive", "service", "fastapi", "asgi"]
    assert _predict_order(runs, 32) == ["service", "fastapi", "asgi", "naive"]
    assert _predict_order(runs, 128) == ["fastapi", "asgi", "naive", "service"]


def test_plan_runs_follows_the_predict_runs_with_batches_and_overload() -> None:
    runs = plan_runs(SERVERS, [1], overload_connections=512)
    assert runs[4:] == [
        Run("batch", "service", 4, 1_000),
        Run("batch", "naive", 4, 1_000),
        Run("batch", "service", 4, 10_000),
        Run("overload", "service", 512),
    ]
    assert [r.path for r in runs[4:]] == ["/predict/batch"] * 3 + ["/predict"]


def test_plan_runs_keeps_rotating_across_rounds() -> None:
    runs = plan_runs(["fastapi", "asgi"], [1, 32], rounds=2)
    assert [(r.round, r.connections, r.server) for r in runs] == [
        (0, 1, "fastapi"),
        (0, 1, "asgi"),
        (0, 32, "asgi"),
        (0, 32, "fastapi"),
        (1, 1, "fastapi"),
        (1, 1, "asgi"),
        (1, 32, "asgi"),
        (1, 32, "fastapi"),
    ]


def test_plan_runs_without_the_service_has_no_service_batches_and_no_overload() -> None:
    runs = plan_runs(["naive", "asgi"], [8])
    assert [(r.scenario, r.server, r.rows) for r in runs] == [
        ("predict", "naive", 1),
        ("predict", "asgi", 1),
        ("batch", "naive", 1_000),
    ]


def test_plan_runs_skips_the_overload_run_when_asked() -> None:
    runs = plan_runs(["service"], [1], overload_connections=0)
    assert all(r.scenario != "overload" for r in runs)
