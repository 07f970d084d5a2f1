"""CPU per request of the customer endpoints, in process (no HTTP, no load generator):

    python -m benchmarks db-cpu [--url URL] [--requests N]

Drives the app (with the seed's N+1 listing of `benchmarks.db_app`) with raw ASGI calls through
`benchmarks.inprocess`, one request at a time, on the database the db suite seeded, and gives
the process's CPU time per request: what each endpoint costs the worker itself, apart from what
PostgreSQL spends.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from pathlib import Path

from benchmarks.asgi_client import InProcessApp, serving
from benchmarks.db_app import N_PLUS_ONE_PATH, with_n_plus_one
from benchmarks.db_suite import PAGE_SIZE
from benchmarks.inprocess import Variant, interleaved_blocks
from churn_mlops.api.app import create_app
from churn_mlops.db.seed import synthetic_id
from churn_mlops.settings import Settings


def _variants(app: InProcessApp) -> list[Variant[int]]:
    """Each endpoint, given a random number: a customer, or the id a page starts after."""

    async def detail(number: int) -> None:
        await app.get(f"/customers/{synthetic_id(number)}")

    async def listing(number: int) -> None:
        await app.get(f"/customers?limit={PAGE_SIZE}&after={number}")

    async def n_plus_one(number: int) -> None:
        await app.get(f"{N_PLUS_ONE_PATH}?limit={PAGE_SIZE}&after={number}")

    return [
        Variant("GET /customers/{id}", detail),
        Variant(f"GET /customers?limit={PAGE_SIZE}", listing),
        Variant(f"seed's N+1 listing, limit={PAGE_SIZE}", n_plus_one),
    ]


async def measure(
    url: str, model_dir: Path, requests: int, customers: int, blocks: int = 1
) -> dict[str, float]:
    """Milliseconds of process CPU per request, by endpoint (the median over `blocks`)."""
    settings = Settings(
        database_url=url,
        model_dir=model_dir,
        auth_enabled=False,
        prediction_log_enabled=False,
    )
    rng = random.Random(1)  # noqa: S311 - load generation
    numbers = [rng.randrange(customers) for _ in range(requests)]
    async with serving(with_n_plus_one(create_app(settings))) as app:
        figures = await interleaved_blocks(
            _variants(app), numbers, blocks, warmup=numbers[: max(requests // 10, 1)]
        )
    return {name: statistics.median(values) / 1000 for name, values in figures.items()}


def run_db_cpu(url: str, model_dir: Path, requests: int, customers: int, blocks: int) -> list[str]:
    figures = asyncio.run(measure(url, model_dir, requests, customers, blocks))
    return [
        "| endpoint | CPU ms per request |",
        "|---|---:|",
        *(f"| {name} | {cpu_ms:.2f} |" for name, cpu_ms in figures.items()),
    ]
