from __future__ import annotations

from benchmarks.plan import ALL_SERVERS, SERVERS, SUITES, Run, plan_runs


def _predict_order(runs: list[Run], connections: int) -> list[str]:
    return [r.server for r in runs if r.scenario == "predict" and r.connections == connections]


def test_plan_runs_rotates_which_server_goes_first_at_each_connection_level() -> None:
    runs = plan_runs(SERVERS, [1, 32, 128])
    assert _predict_order(runs, 1) == ["production", "naive", "service", "fastapi", "asgi"]
    assert _predict_order(runs, 32) == ["naive", "service", "fastapi", "asgi", "production"]
    assert _predict_order(runs, 128) == ["service", "fastapi", "asgi", "production", "naive"]


def test_plan_runs_follows_the_predict_runs_with_batches_and_overload() -> None:
    runs = plan_runs(SERVERS, [1], overload_connections=512)
    assert runs[5:] == [
        Run("batch", "service", 4, 1_000),
        Run("batch", "naive", 4, 1_000),
        Run("batch", "service", 4, 10_000),
        Run("overload", "service", 512),
    ]
    assert [r.path for r in runs[5:]] == ["/predict/batch"] * 3 + ["/predict"]


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


def test_plan_runs_of_the_cache_suite_rotate_the_three_caches_per_workload() -> None:
    runs = plan_runs(ALL_SERVERS, [1, 128], suites=["cache"], cache_connections=[32])
    assert runs == [
        Run("hit", "service", 32, hit_ratio=1.0),
        Run("hit", "cache-l1", 32, hit_ratio=1.0),
        Run("hit", "cache-l2", 32, hit_ratio=1.0),
        Run("mixed", "cache-l1", 32, hit_ratio=0.5),
        Run("mixed", "cache-l2", 32, hit_ratio=0.5),
        Run("mixed", "service", 32, hit_ratio=0.5),
    ]
    assert {(r.path, r.timeout_s) for r in runs} == {("/predict", 5)}


def test_plan_runs_of_both_suites_put_the_cache_runs_after_each_default_round() -> None:
    runs = plan_runs(
        ["asgi", "service", "cache-l1"],
        [1],
        rounds=2,
        overload_connections=0,
        suites=SUITES,
        cache_connections=[8, 32],
        hit_ratio=0.25,
    )
    assert [(r.round, r.scenario, r.server, r.connections, r.hit_ratio) for r in runs] == [
        (0, "predict", "service", 1, None),
        (0, "predict", "asgi", 1, None),
        (0, "batch", "service", 4, None),
        (0, "batch", "service", 4, None),
        (0, "hit", "service", 8, 1.0),
        (0, "hit", "cache-l1", 8, 1.0),
        (0, "mixed", "cache-l1", 8, 0.25),
        (0, "mixed", "service", 8, 0.25),
        (0, "hit", "service", 32, 1.0),
        (0, "hit", "cache-l1", 32, 1.0),
        (0, "mixed", "cache-l1", 32, 0.25),
        (0, "mixed", "service", 32, 0.25),
        (1, "predict", "asgi", 1, None),
        (1, "predict", "service", 1, None),
        (1, "batch", "service", 4, None),
        (1, "batch", "service", 4, None),
        (1, "hit", "service", 8, 1.0),
        (1, "hit", "cache-l1", 8, 1.0),
        (1, "mixed", "cache-l1", 8, 0.25),
        (1, "mixed", "service", 8, 0.25),
        (1, "hit", "service", 32, 1.0),
        (1, "hit", "cache-l1", 32, 1.0),
        (1, "mixed", "cache-l1", 32, 0.25),
        (1, "mixed", "service", 32, 0.25),
    ]


def test_plan_runs_of_the_default_suite_leave_the_cache_servers_out() -> None:
    runs = plan_runs(ALL_SERVERS, [1], overload_connections=0)
    assert {r.server for r in runs} == set(SERVERS)
    assert all(r.hit_ratio is None for r in runs)


def test_plan_runs_of_the_cache_suite_without_its_servers_plan_nothing() -> None:
    assert plan_runs(["naive", "asgi"], [1], suites=["cache"]) == []
