"""The in-process A/B driver: the same calls against two or more configurations of the service
in one process, in blocks that take turns going first, timed per call.

Over HTTP on a shared 2-core machine the RPS of one server varies by tens of percent between
rounds, more than most changes move it; the CPU time one process spends per call does not
depend on what else runs. So every in-process comparison of the harness (the prediction cache,
the prediction log, authentication, metrics, the customer endpoints) drives the app or the
pipeline here: raw ASGI calls (no sockets, no client library), one configuration's block after
the other's, the first one rotating between blocks so that the machine's drift hits all alike.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from benchmarks.asgi_client import InProcessApp, serving
from churn_mlops.api.app import ChurnAPI
from churn_mlops.runtime import Runtime

T = TypeVar("T")
Clock = Callable[[], float]

CPU_CLOCK: Clock = time.process_time
"""The process's CPU time: what a call costs the worker, whatever else the machine runs."""
WALL_CLOCK: Clock = time.perf_counter


def service_runtime(app: ChurnAPI) -> Runtime:
    """The components of a running service: the harness's one look inside the app.

    Everything else drives the app through ASGI or builds it with its public factories
    (`create_app`, `open_runtime`); when the app's internals move, this is the line to change.
    """
    runtime = app.runtime
    if runtime is None:
        raise RuntimeError("the app's lifespan is not running")
    return runtime


@asynccontextmanager
async def serving_all(
    apps: Mapping[str, Any], headers: Mapping[str, Sequence[tuple[bytes, bytes]]] | None = None
) -> AsyncIterator[dict[str, InProcessApp]]:
    """Every app of `apps` running at once, by name."""
    async with AsyncExitStack() as stack:
        yield {
            name: await stack.enter_async_context(serving(app, (headers or {}).get(name, ())))
            for name, app in apps.items()
        }


@dataclass(frozen=True)
class Variant(Generic[T]):
    """One side of an A/B: what one call does, and what must finish before its block's time
    stops (work the calls left behind, such as the prediction log's writes)."""

    name: str
    call: Callable[[T], Awaitable[object]]
    settle: Callable[[], Awaitable[None]] | None = None


def predict_variant(
    name: str, app: InProcessApp, settle: Callable[[], Awaitable[None]] | None = None
) -> Variant[bytes]:
    """`POST /predict` of each body to `app`."""

    async def post(body: bytes) -> None:
        await app.post("/predict", body)

    return Variant(name, post, settle)


def turns(names: Sequence[str], block: int) -> list[str]:
    """The order of block number `block`: a rotation, so that each goes first as often."""
    shift = block % len(names) if names else 0
    return [*names[shift:], *names[:shift]]


async def time_calls(
    variant: Variant[T],
    inputs: Sequence[T],
    *,
    callers: int = 1,
    clock: Clock = CPU_CLOCK,
) -> float:
    """Microseconds of `clock` per call: every input through `variant.call`, by `callers`
    concurrent callers; with more than one, each yields to the event loop after every call (as
    a request waiting for its socket would), so that their calls interleave."""

    async def caller(first: int) -> None:
        for index in range(first, len(inputs), callers):
            await variant.call(inputs[index])
            if callers > 1:
                await asyncio.sleep(0)

    began = clock()
    await asyncio.gather(*(caller(first) for first in range(callers)))
    if variant.settle is not None:
        await variant.settle()
    return (clock() - began) / len(inputs) * 1e6


async def interleaved_block(
    variants: Sequence[Variant[T]],
    inputs: Sequence[T],
    block: int,
    *,
    callers: int = 1,
    clock: Clock = CPU_CLOCK,
) -> dict[str, float]:
    """One block of each variant on the same inputs, in the turn of block number `block`."""
    by_name = {variant.name: variant for variant in variants}
    return {
        name: await time_calls(by_name[name], inputs, callers=callers, clock=clock)
        for name in turns(list(by_name), block)
    }


async def interleaved_blocks(
    variants: Sequence[Variant[T]],
    inputs: Sequence[T],
    blocks: int,
    *,
    warmup: Sequence[T] = (),
    callers: int = 1,
    clock: Clock = CPU_CLOCK,
) -> dict[str, list[float]]:
    """`blocks` blocks of each variant, taking turns; one figure per block, by variant name.
    `warmup` goes through each variant first, untimed (the model's and the caches' first calls,
    the database's prepared statements)."""
    for variant in variants:
        for item in warmup:
            await variant.call(item)
        if variant.settle is not None:
            await variant.settle()
    figures: dict[str, list[float]] = {variant.name: [] for variant in variants}
    for block in range(blocks):
        timed = await interleaved_block(variants, inputs, block, callers=callers, clock=clock)
        for name, figure in timed.items():
            figures[name].append(figure)
    return figures


def cycle(items: Sequence[T], count: int) -> list[T]:
    """`count` items, going round `items` as often as it takes."""
    return [items[index % len(items)] for index in range(count)]


def cpu_table(figures: Mapping[str, Sequence[float]], first: str, second: str) -> list[str]:
    """Median, min and max per configuration, and what `first` adds to `second`'s median."""
    lines = [
        "| app | median CPU us per request | min | max | blocks |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in figures.items():
        lines.append(
            f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} "
            f"| {max(values):.1f} | {len(values)} |"
        )
    added = statistics.median(figures[first]) - statistics.median(figures[second])
    share = added / statistics.median(figures[second]) * 100
    lines.append(f"{first} adds {added:.2f} us of CPU per request to {second} ({share:+.1f} %)")
    return lines
