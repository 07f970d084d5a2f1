"""In-process A/B of the prediction cache: CPU time per `PredictionPipeline.predict_one` call.

Three pipelines built as the service builds them (`open_runtime`, the micro-batcher on): cache
off, L1 only and L1 + L2 (with `--redis-url`), in one process, driven by `benchmarks.inprocess`
with `--concurrency` callers on the hit path (500 warm customers), on misses only (customers
never sent before) and on a 50/50 mix; workloads and pipelines take turns within each round.
The report gives the median process CPU time per call over the rounds, and each cache's
throughput relative to the cache off.

    python -m benchmarks cache-cpu --model-dir var/model --rounds 7 --concurrency 32
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path

from benchmarks.cache_servers import L1_TTL_SECONDS, bench_key_prefix
from benchmarks.cache_workload import fresh_body, fresh_templates, warm_bodies
from benchmarks.inprocess import Variant, cycle, interleaved_block, time_calls
from benchmarks.terminal import log
from churn_mlops.data import TelcoDataset, load_telco_csv
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.prediction.pipeline import PredictionPipeline
from churn_mlops.runtime import open_runtime
from churn_mlops.settings import Settings

WORKLOADS = ("hit", "miss", "mix50")
Results = dict[str, dict[str, list[float]]]


async def _pipeline(
    stack: AsyncExitStack, artifact: ModelArtifact, redis_url: str | None, cache: bool, prefix: str
) -> PredictionPipeline:
    """A pipeline as the service runs it, for as long as `stack` is open."""
    settings = Settings(
        cache_enabled=cache,
        redis_url=redis_url,
        cache_key_prefix=prefix,
        cache_l1_ttl_seconds=L1_TTL_SECONDS,
        # Shedding is not what this measures: a busy machine must not turn calls into 503s.
        batch_max_queue=1_000_000,
        batch_max_queue_delay_ms=60_000,
        # The pipeline alone: no database, no prediction log, no authentication, no metrics.
        database_url="",
        auth_enabled=False,
        metrics_enabled=False,
    )
    runtime = await stack.enter_async_context(open_runtime(settings, artifact))
    pipeline = runtime.pipeline
    assert pipeline is not None  # noqa: S101 - open_runtime serves a model until it exits
    if pipeline.cache is not None and pipeline.cache.l2_enabled:
        # Before the runtime closes: the bench's own prefix only.
        stack.push_async_callback(pipeline.cache.clear)
    return pipeline


async def _wait_for_writes(pipelines: Sequence[PredictionPipeline]) -> None:
    for pipeline in pipelines:
        if pipeline.cache is not None:
            await pipeline.cache.wait_for_writes()


async def measure(
    model_dir: Path, *, rounds: int, calls: int, callers: int, redis_url: str | None
) -> Results:
    """Microseconds of process CPU per call: {workload: {pipeline: [one figure per round]}}."""
    artifact = ModelArtifact.load(model_dir)
    dataset = load_telco_csv()
    warm = warm_bodies(dataset)
    fresh = _fresh_bodies(dataset)
    prefix = bench_key_prefix()
    configurations: dict[str, tuple[str | None, bool]] = {
        "cache off": (None, False),
        "L1 only": (None, True),
    }
    if redis_url:
        configurations["L1 + L2"] = (redis_url, True)
    async with AsyncExitStack() as stack:
        pipelines = {
            name: await _pipeline(stack, artifact, url, cache, prefix)
            for name, (url, cache) in configurations.items()
        }
        variants = [Variant(name, p.predict_one) for name, p in pipelines.items()]
        for variant, pipeline in zip(variants, pipelines.values(), strict=True):
            if pipeline.cache is not None:  # the hit path's customers in every cache
                await time_calls(variant, warm)
        await _wait_for_writes(list(pipelines.values()))
        gc.freeze()
        results: Results = {w: {name: [] for name in pipelines} for w in WORKLOADS}
        for number in range(rounds):
            half = fresh(calls // 2)
            workloads = {
                "hit": cycle(warm, calls),
                "miss": fresh(calls),
                "mix50": [
                    b for pair in zip(half, cycle(warm, len(half)), strict=True) for b in pair
                ],
            }
            for workload, bodies in workloads.items():
                timed = await interleaved_block(variants, bodies, number, callers=callers)
                for name, figure in timed.items():
                    results[workload][name].append(figure)
            await _wait_for_writes(list(pipelines.values()))
            log(f"round {number + 1} of {rounds} done")
        return results


def _fresh_bodies(dataset: TelcoDataset) -> Callable[[int], list[bytes]]:
    """Bodies of customers never sent before, numbered on from one call to the next."""
    templates = fresh_templates(dataset)
    sent = 0

    def take(count: int) -> list[bytes]:
        nonlocal sent
        made = [fresh_body(templates, sent + i) for i in range(count)]
        sent += count
        return made

    return take


def report(results: Results) -> list[str]:
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
