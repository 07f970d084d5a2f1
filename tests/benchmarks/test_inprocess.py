"""The in-process A/B driver: turns, timed blocks, raw ASGI calls, the one look inside the app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from benchmarks.inprocess import (
    InProcessApp,
    Variant,
    cpu_table,
    cycle,
    interleaved_blocks,
    service_runtime,
    serving,
    time_calls,
    turns,
)
from churn_mlops.api.app import create_app
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.settings import Settings

pytestmark = pytest.mark.anyio

Message = MutableMapping[str, Any]


def test_turns_rotate_so_that_each_goes_first_as_often() -> None:
    names = ["a", "b", "c"]
    assert [turns(names, block) for block in range(4)] == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]


def test_cycle_goes_round_the_items() -> None:
    assert cycle([1, 2, 3], 7) == [1, 2, 3, 1, 2, 3, 1]


async def test_interleaved_blocks_time_every_variant_in_every_block_in_turn() -> None:
    order: list[tuple[str, int]] = []
    settled: list[str] = []
    ticks = iter(range(1_000_000))

    def variant(name: str) -> Variant[int]:
        async def call(item: int) -> None:
            order.append((name, item))

        async def settle() -> None:
            settled.append(name)

        return Variant(name, call, settle)

    figures = await interleaved_blocks(
        [variant("a"), variant("b")],
        [1, 2],
        3,
        warmup=[0],
        clock=lambda: float(next(ticks)),
    )
    # Warm-up first, untimed; then the blocks, the first of each rotating.
    assert order[:2] == [("a", 0), ("b", 0)]
    assert [name for name, item in order[2:] if item == 1] == ["a", "b", "b", "a", "a", "b"]
    assert settled == ["a", "b", *["a", "b", "b", "a", "a", "b"]]
    # Two clock reads per block, one tick apart, over two calls: 0.5e6 "microseconds" a call.
    assert figures == {"a": [0.5e6] * 3, "b": [0.5e6] * 3}


async def test_time_calls_interleaves_concurrent_callers() -> None:
    seen: list[int] = []

    async def call(item: int) -> None:
        seen.append(item)

    await time_calls(Variant("x", call), list(range(6)), callers=2)
    # Caller 0 takes 0, 2, 4 and caller 1 takes 1, 3, 5; each yields after every call, so
    # their calls alternate instead of one caller running to its end first.
    assert seen == [0, 1, 2, 3, 4, 5]


async def test_in_process_app_sends_the_request_and_refuses_an_answer_other_than_2xx() -> None:
    scopes: list[Message] = []
    bodies: list[bytes] = []

    async def app(scope: Message, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        scopes.append(scope)
        bodies.append((await receive())["body"])
        status = 200 if scope["path"] == "/ok" else 418
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    running = InProcessApp(app, {"runtime": "r"}, [(b"x-api-key", b"k")])
    assert await running.call("POST", "/ok?a=1", b"{}") == 200
    with pytest.raises(RuntimeError, match=r"in-process GET /teapot answered 418"):
        await running.get("/teapot")
    posted = scopes[0]
    assert (posted["method"], posted["path"], posted["query_string"]) == ("POST", "/ok", b"a=1")
    assert posted["state"] == {"runtime": "r"}
    assert posted["state"] is not scopes[1]["state"]  # a copy per request, as a server makes
    assert (b"x-api-key", b"k") in posted["headers"]
    assert (b"content-length", b"2") in posted["headers"]
    assert bodies == [b"{}", b""]


def test_cpu_table_gives_medians_and_what_the_first_adds() -> None:
    lines = cpu_table({"on": [11.0, 12.0, 13.0], "off": [10.0, 9.0, 11.0]}, "on", "off")
    assert lines[2] == "| on | 12.0 | 11.0 | 13.0 | 3 |"
    assert lines[3] == "| off | 10.0 | 9.0 | 11.0 | 3 |"
    assert lines[4] == "on adds 2.00 us of CPU per request to off (+20.0 %)"


async def test_serving_runs_the_lifespan_and_service_runtime_sees_the_runtime(
    artifact_dir: Path,
) -> None:
    settings = Settings(
        model_dir=artifact_dir, database_url="", auth_enabled=False, environment="test"
    )
    app = create_app(settings)
    body = orjson.dumps({"features": EXAMPLE_FEATURES})
    async with serving(app) as running:
        await running.post("/predict", body)
        await running.get("/health/ready")
        assert service_runtime(app).prediction_log is None
        assert service_runtime(app).settings is settings
    with pytest.raises(RuntimeError, match="lifespan is not running"):
        service_runtime(app)
