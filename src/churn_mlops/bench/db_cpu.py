"""CPU per request of the customer endpoints, in-process (no HTTP, no load generator):

    python -m churn_mlops.bench.db_cpu [--url URL] [--requests N]

Drives the app (with the seed's N+1 listing of `bench.db_app`) through httpx's ASGI transport,
one request at a time, on the database `churn-mlops bench --suite db` seeded, and prints the
process's CPU time per request: what each endpoint costs the worker itself, apart from what
PostgreSQL spends.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from churn_mlops.api.app import create_app
from churn_mlops.bench.db_app import N_PLUS_ONE_PATH, build_n_plus_one_router
from churn_mlops.bench.db_suite import DEFAULT_DB_URL, PAGE_SIZE
from churn_mlops.db.seed import synthetic_id
from churn_mlops.settings import Settings


async def measure(url: str, model_dir: Path, requests: int, customers: int) -> dict[str, float]:
    settings = Settings(
        database_url=url,
        model_dir=model_dir,
        auth_enabled=False,
        prediction_log_enabled=False,
    )
    app = create_app(settings)
    app.include_router(build_n_plus_one_router())
    rng = random.Random(1)  # noqa: S311 - load generation
    paths: dict[str, Callable[[], str]] = {
        "GET /customers/{id}": lambda: f"/customers/{synthetic_id(rng.randrange(customers))}",
        f"GET /customers?limit={PAGE_SIZE}": lambda: (
            f"/customers?limit={PAGE_SIZE}&after={rng.randrange(customers)}"
        ),
        f"seed's N+1 listing, limit={PAGE_SIZE}": lambda: (
            f"{N_PLUS_ONE_PATH}?limit={PAGE_SIZE}&after={rng.randrange(customers)}"
        ),
    }
    result: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        # No gzip, as wrk in `bench --suite db` asks for none.
        headers = {"Accept-Encoding": "identity"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers
        ) as client:
            for name, path in paths.items():
                for _ in range(max(requests // 10, 1)):  # warm-up: pool, caches
                    (await client.get(path())).raise_for_status()
                began = time.process_time()
                for _ in range(requests):
                    (await client.get(path())).raise_for_status()
                result[name] = (time.process_time() - began) / requests * 1000
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_DB_URL)
    parser.add_argument("--model-dir", type=Path, default=Settings().model_dir)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    figures = asyncio.run(measure(args.url, args.model_dir, args.requests, args.customers))
    print("| endpoint | CPU ms per request |\n|---|---:|")
    for name, cpu_ms in figures.items():
        print(f"| {name} | {cpu_ms:.2f} |")


if __name__ == "__main__":
    main()
