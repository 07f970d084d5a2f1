"""The runs of a plan, one after the other against the started servers: each warmed up, measured
and drained, so that every run starts on an idle server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from benchmarks.cache_suite import CacheWorkload, snapshot_after_runs, warm_caches
from benchmarks.constants import WRK_THREADS
from benchmarks.load import LoadResult, Wrk
from benchmarks.plan import CACHE_SCENARIOS, Run
from benchmarks.servers import RunningServer, check_alive, settle
from benchmarks.summary import Measurement
from benchmarks.terminal import console


class Runner:
    """Runs the plan's runs one after the other against the started servers."""

    def __init__(
        self,
        wrk: Wrk,
        servers: Mapping[str, RunningServer],
        warmup_s: int,
        duration_s: int,
        bodies: Mapping[int, Path],
        cache: CacheWorkload | None,
    ) -> None:
        self.wrk, self.servers = wrk, servers
        self.warmup_s, self.duration_s = warmup_s, duration_s
        self.bodies, self.cache = bodies, cache

    def run_all(self, runs: Sequence[Run], measurements: list[Measurement]) -> None:
        width = len(str(len(runs)))
        for number, run in enumerate(runs, start=1):
            rows = f" {run.rows:,} rows" if run.rows > 1 else ""
            title = (
                f"[{number:>{width}}/{len(runs)}] {run.server:<8} {run.scenario}{rows} "
                f"c={run.connections}"
            )
            if run.scenario in CACHE_SCENARIOS:
                self._warm_once(runs)
            result = self._measure(run, title)
            measurements.append(Measurement(run, result))
            console.print(f"{title:<41} {_describe(run, result)}", soft_wrap=True)
            if result.requests == 0:
                console.print(
                    f"[yellow]  no answer within the run: {run.server} is stuck or slower than "
                    f"{self.duration_s} s per request; see "
                    f"{self.servers[run.server].log_path}[/]"
                )
        if self.cache is not None:
            snapshot_after_runs(self.servers, self.cache)

    def _warm_once(self, runs: Sequence[Run]) -> None:
        cache = self.cache
        assert cache is not None  # noqa: S101 - planned with the cache suite
        if not cache.warmed:
            levels = [r.connections for r in runs if r.scenario in CACHE_SCENARIOS]
            warm_caches(self.wrk, self.servers, cache, max(levels), max(self.warmup_s, 1))
            cache.warmed = True

    def _measure(self, run: Run, title: str) -> LoadResult:
        """Warm up, let the server drain, measure, let it drain again: each run starts idle."""
        server = self.servers[run.server]
        cached = run.scenario in CACHE_SCENARIOS and self.cache is not None
        check_alive(server)
        warmup_s, duration_s = self.warmup_s, self.duration_s
        if warmup_s:
            with console.status(f"{title}: {warmup_s} s warm-up"):
                self._load(server, run, warmup_s, cached)
            settle(server, "warm-up")
        with console.status(f"{title}: measuring for {duration_s} s"):
            result = self._load(server, run, duration_s, cached)
        settle(server, "run")
        return result

    def _load(self, server: RunningServer, run: Run, duration_s: int, cached: bool) -> LoadResult:
        cache = self.cache if cached else None
        mix = cache.mix(run.hit_ratio) if cache is not None and run.hit_ratio is not None else None
        result = self.wrk.run(
            server.port,
            run.path,
            cache.warm if cache is not None else self.bodies[run.rows],
            connections=run.connections,
            threads=WRK_THREADS,
            timeout_s=run.timeout_s,
            duration_s=duration_s,
            mix=mix,
            api_key=server.spec.api_key,
        )
        if cache is not None:
            cache.used(result)
        return result


def _describe(run: Run, result: LoadResult) -> str:
    latency = result.latency_ms
    line = (
        f"{result.rps:>9,.1f} req/s  p50 {latency['p50']:.2f} ms  "
        f"p99 {latency['p99']:.2f} ms  errors {result.failed:,}"
    )
    if run.rows > 1:
        line += f"  ({result.rps * run.rows:,.0f} rows/s)"
    if run.scenario == "overload":
        line += f"  503s {result.statuses.get(503, 0):,}"
    if run.scenario in CACHE_SCENARIOS:
        line += f"  cached {result.cached_ratio:.1%}"
    return line
