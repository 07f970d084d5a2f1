"""The cache suite's part of an HTTP run: its bodies, warming every cache server, what
`GET /cache/stats` says before and after the runs, and deleting the bench's Redis keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis

from benchmarks.cache_servers import L2_TTL_SECONDS, remove_keys, worker_cache_stats
from benchmarks.cache_workload import (
    fresh_supply,
    fresh_templates,
    mix_schedule,
    warm_bodies,
    write_fresh_templates,
)
from benchmarks.constants import REQUEST_TIMEOUT_S, WRK_THREADS
from benchmarks.load import LoadResult, Mix, Wrk, write_bodies
from benchmarks.servers import RunningServer, check_alive, settle
from benchmarks.summary import CacheSnapshot
from benchmarks.terminal import console
from churn_mlops.data import load_telco_csv

CACHE_SERVER_NAMES = ("cache-l1", "cache-l2")


@dataclass
class CacheWorkload:
    """The cache suite's bodies, and the numbering of fresh bodies across all its runs.

    Every server gets fresh bodies no run sent before, anywhere in the bench: each run starts
    after the numbers the previous one used up.
    """

    warm: Path
    warm_customers: int
    templates: Path
    supply: int
    next_fresh: int = 0
    warmed: bool = False
    snapshots: list[CacheSnapshot] = field(default_factory=list)

    @classmethod
    def write(cls, work: Path) -> CacheWorkload:
        dataset = load_telco_csv()
        warm = warm_bodies(dataset)
        templates = fresh_templates(dataset)
        return cls(
            warm=write_bodies(work / "cache-warm.jsonl", warm),
            warm_customers=len(warm),
            templates=write_fresh_templates(work / "cache-fresh.tsv", templates),
            supply=fresh_supply(templates),
        )

    def mix(self, hit_ratio: float) -> Mix | None:
        schedule = mix_schedule(hit_ratio)
        if "f" not in schedule:
            return None  # the hit path: warm bodies only
        return Mix(schedule, self.templates, self.next_fresh)

    def used(self, result: LoadResult) -> None:
        before = self.next_fresh
        self.next_fresh += result.fresh_span
        if before < self.supply <= self.next_fresh:
            console.print(
                f"[yellow]  all {self.supply:,} fresh bodies sent: later mixed runs repeat "
                "them, and their observed hit ratio rises above the target[/]"
            )


def snapshot(server: RunningServer, moment: str, cache: CacheWorkload) -> None:
    """Record what the server's workers say in `GET /cache/stats`, and print it."""
    check_alive(server)
    try:
        workers = worker_cache_stats(server)
    except (OSError, ValueError) as error:
        console.print(f"[yellow]  no /cache/stats from {server.spec.name} {moment}: {error}[/]")
        return
    cache.snapshots.append(CacheSnapshot(server.spec.name, moment, workers))
    sizes = ", ".join(f"{w['l1']['size']:,}" for w in workers if w.get("enabled"))
    rates = ", ".join(f"{w['hit_rate']:.1%}" for w in workers if w.get("enabled"))
    console.print(
        f"  {server.spec.name} {moment}: {len(workers)} of {server.spec.workers} workers "
        f"reached, L1 entries {sizes}, hit rate {rates}"
    )


def warm_caches(
    wrk: Wrk,
    servers: Mapping[str, RunningServer],
    cache: CacheWorkload,
    connections: int,
    seconds: int,
) -> None:
    """Send the warm bodies to every cache server, many times each, over many connections.

    Each worker has its own L1 and a connection stays with the worker that accepted it, so a
    body is warm in every worker only once it went over connections that reached each of them;
    at thousands of requests a second, `seconds` sends each of a few hundred bodies dozens of
    times. The stats say how far it got; a body still cold in a worker costs one miss there.
    """
    for name in CACHE_SERVER_NAMES:
        server = servers.get(name)
        if server is None:
            continue
        check_alive(server)
        with console.status(f"warming {name}: {cache.warm_customers} customers for {seconds} s"):
            wrk.run(
                server.port,
                "/predict",
                cache.warm,
                connections=connections,
                threads=WRK_THREADS,
                duration_s=seconds,
                timeout_s=REQUEST_TIMEOUT_S,
                api_key=server.spec.api_key,
            )
        settle(server, "warming")
        snapshot(server, "after warming", cache)


def snapshot_after_runs(servers: Mapping[str, RunningServer], cache: CacheWorkload) -> None:
    if cache.warmed:
        for name in CACHE_SERVER_NAMES:
            if name in servers:
                snapshot(servers[name], "after the runs", cache)


def remove_bench_keys(url: str, prefix: str) -> int | None:
    """Delete the bench's keys from Redis; None (and a warning) if Redis refused."""
    try:
        removed = remove_keys(url, prefix)
    except (redis.RedisError, OSError) as error:
        console.print(
            f"[yellow]could not delete the keys under {prefix}: from {url} ({error}); "
            f"they expire within {L2_TTL_SECONDS} s[/]"
        )
        return None
    console.print(f"deleted {removed:,} keys under {prefix}: from {url}")
    return removed
