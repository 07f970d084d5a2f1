"""In-process A/B of the prediction cache: CPU time per `PredictionPipeline.predict_one` call.

Over HTTP on a shared 2-core machine, the RPS of one server varies by tens of percent between
rounds, more than the cache changes it; the CPU time a process spends per call does not depend
on what else runs. This drives three pipelines built like the service's (the micro-batcher on):
cache off, L1 only and L1 + L2 (with `--redis-url`), in one process, with `--concurrency`
callers that each yield to the event loop after every call (as a request waiting for its socket
would), on the hit path (500 warm customers), on misses only (customers never sent before) and
on a 50/50 mix; workloads and servers take turns within each round. Prints the median process
CPU time per call over the rounds, and each cache's throughput relative to the cache off.

    python -m churn_mlops.bench.cache_cpu --model-dir var/model --rounds 7 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from churn_mlops.api.app import build_pipeline
from churn_mlops.bench.cache_servers import bench_key_prefix
from churn_mlops.bench.cache_workload import fresh_body, fresh_templates, warm_bodies
from churn_mlops.core.features import EXAMPLE_FEATURES
from churn_mlops.data import load_telco_csv
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.prediction.pipeline import PredictionPipeline
from churn_mlops.prediction.strict_parser import StrictBodyParser
from churn_mlops.settings import Settings

WORKLOADS = ("hit", "miss", "mix50")


def _pipeline(
    artifact: ModelArtifact, cache: bool, redis_url: str | None, prefix: str
) -> PredictionPipeline:
    settings = Settings(
        cache_enabled=cache,
        redis_url=redis_url,
        cache_key_prefix=prefix,
        cache_l1_ttl_seconds=86_400,
        # Shedding is not what this measures: a busy machine must not turn calls into 503s.
        batch_max_queue=1_000_000,
        batch_max_queue_delay_ms=60_000,
    )
    pipeline = build_pipeline(artifact, settings, StrictBodyParser(settings.max_batch_rows))
    pipeline.warm_up(orjson.dumps({"features": EXAMPLE_FEATURES}))
    return pipeline


async def _cpu_per_call(
    pipeline: PredictionPipeline, bodies: Sequence[bytes], callers: int
) -> float:
    async def caller(first: int) -> None:
        for index in range(first, len(bodies), callers):
            await pipeline.predict_one(bodies[index])
            await asyncio.sleep(0)

    start = time.process_time()
    await asyncio.gather(*(caller(first) for first in range(callers)))
    return (time.process_time() - start) / len(bodies) * 1e6


async def measure(
    model_dir: Path, *, rounds: int, calls: int, callers: int, redis_url: str | None
) -> dict[str, dict[str, list[float]]]:
    """Microseconds of process CPU per call: {workload: {server: [one figure per round]}}."""
    artifact = ModelArtifact.load(model_dir)
    dataset = load_telco_csv()
    warm = warm_bodies(dataset)
    templates = fresh_templates(dataset)
    prefix = bench_key_prefix()
    servers = {"cache off": _pipeline(artifact, False, None, prefix)}
    servers["L1 only"] = _pipeline(artifact, True, None, prefix)
    if redis_url:
        servers["L1 + L2"] = _pipeline(artifact, True, redis_url, prefix)
    fresh_count = 0

    def fresh(count: int) -> list[bytes]:
        nonlocal fresh_count
        made = [fresh_body(templates, fresh_count + i) for i in range(count)]
        fresh_count += count
        return made

    try:
        for pipeline in servers.values():
            if pipeline.cache is not None:
                await _cpu_per_call(pipeline, warm, 1)
                await pipeline.cache.wait_for_writes()
        gc.freeze()
        results: dict[str, dict[str, list[float]]] = {
            w: {s: [] for s in servers} for w in WORKLOADS
        }
        names = list(servers)
        for number in range(rounds):
            order = names[number % len(names) :] + names[: number % len(names)]
            half = fresh(calls // 2)
            workloads = {
                "hit": _cycle(warm, calls),
                "miss": fresh(calls),
                "mix50": [
                    b for pair in zip(half, _cycle(warm, len(half)), strict=True) for b in pair
                ],
            }
            for workload, bodies in workloads.items():
                for name in order:
                    figure = await _cpu_per_call(servers[name], bodies, callers)
                    results[workload][name].append(figure)
            for pipeline in servers.values():
                if pipeline.cache is not None:
                    await pipeline.cache.wait_for_writes()
            print(f"round {number + 1} of {rounds} done", file=sys.stderr, flush=True)
        return results
    finally:
        for pipeline in servers.values():
            if pipeline.cache is not None and pipeline.cache.l2_enabled:
                await pipeline.cache.clear()  # the bench's own prefix only
            await pipeline.close()


def _cycle(bodies: Sequence[bytes], count: int) -> list[bytes]:
    return [bodies[index % len(bodies)] for index in range(count)]


def report(results: dict[str, dict[str, list[float]]]) -> list[str]:
    lines = []
    for workload, servers in results.items():
        reference = statistics.median(servers["cache off"])
        for name, figures in servers.items():
            median = statistics.median(figures)
            rounds = " ".join(f"{figure:.2f}" for figure in figures)
            lines.append(
                f"{workload:6s} {name:10s} {median:6.2f} us CPU/call  "
                f"{reference / median:4.2f}x cache-off throughput  (rounds: {rounds})"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Settings().model_dir)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000, help="calls per run")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent callers")
    parser.add_argument("--redis-url", default=None, help="add an L1 + L2 pipeline on this Redis")
    args = parser.parse_args(argv)
    results = asyncio.run(
        measure(
            args.model_dir,
            rounds=args.rounds,
            calls=args.calls,
            callers=args.concurrency,
            redis_url=args.redis_url,
        )
    )
    print("\n".join(report(results)))


if __name__ == "__main__":
    main()
