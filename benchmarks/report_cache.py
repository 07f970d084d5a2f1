"""The cache suite's tables: each workload against the cache off, what `GET /cache/stats` said
of the workers before and after the runs, and Redis's side of L2."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.plan import CACHE_SCENARIOS
from benchmarks.summary import (
    CACHE_LABELS,
    WORKLOADS,
    BenchMeta,
    CacheSnapshot,
    Summary,
    find,
    latencies,
    ratio,
    table,
)


def _share(ratio: float) -> str:
    """A percentage that shows 0 % and 100 % only when exact."""
    text = f"{ratio:.1%}"
    if text == "100.0%" and ratio < 1:
        return ">99.9%"
    if text == "0.0%" and ratio > 0:
        return "<0.1%"
    return text


def cache_table(
    summaries: Sequence[Summary], meta: BenchMeta, snapshots: Sequence[CacheSnapshot]
) -> list[str]:
    rows = []
    for s in summaries:
        if s.scenario not in CACHE_SCENARIOS:
            continue
        reference = find(summaries, s.scenario, "service", s.connections, s.rows)
        rows.append(
            [
                WORKLOADS[s.scenario],
                CACHE_LABELS.get(s.server, s.server),
                str(s.connections),
                "-" if s.hit_ratio is None else f"{s.hit_ratio:.0%}",
                _share(s.cached_ratio) if s.requests else "-",
                f"{s.rps:,.0f}",
                *latencies(s, "p50", "p99"),
                f"{s.failed:,}",
                ratio(s.rps, reference),
            ]
        )
    if not rows:
        return []
    intro = (
        f"The hit path cycles through {meta.warm_customers or 'a few'} customers sent to every "
        "cache server before its first run; the mixed workload interleaves them with customers "
        "never sent before, in the target proportion. Observed hits: answers marked "
        '`"cached": true`.'
    )
    if meta.redis_url:
        intro += f" L2: {meta.redis_url}, keys under `{meta.redis_key_prefix}:`"
        intro += (
            "."
            if meta.redis_keys_removed is None
            else f", {meta.redis_keys_removed:,} of them deleted after the run."
        )
        intro += _redis_trouble(snapshots)
    header = "workload|server|connections|target hits|observed hits|RPS|p50 ms|p99 ms|errors"
    header += "|vs cache off"
    return [
        "",
        "## POST /predict with the prediction cache",
        "",
        intro,
        "",
        *table(header.split("|"), rows),
    ]


def _worker_sum(workers: Sequence[dict[str, Any]], level: str, name: str) -> int:
    return sum(int(worker[level][name]) for worker in workers)


def _enabled_workers(snapshot: CacheSnapshot) -> list[dict[str, Any]]:
    return [worker for worker in snapshot.workers if worker.get("enabled")]


def stats_table(snapshots: Sequence[CacheSnapshot], meta: BenchMeta) -> list[str]:
    rows = []
    for snapshot in snapshots:
        workers = _enabled_workers(snapshot)
        if not workers:
            continue
        lookups = _worker_sum(workers, "l1", "hits") + _worker_sum(workers, "l1", "misses")
        hits = _worker_sum(workers, "l1", "hits") + _worker_sum(workers, "l2", "hits")
        l2 = all(worker["l2"]["enabled"] for worker in workers)
        rows.append(
            [
                CACHE_LABELS.get(snapshot.server, snapshot.server),
                snapshot.moment,
                f"{len(workers)} of {meta.workers}",
                ", ".join(f"{worker['l1']['size']:,}" for worker in workers),
                f"{_worker_sum(workers, 'l1', 'hits'):,}",
                f"{_worker_sum(workers, 'l1', 'misses'):,}",
                f"{_worker_sum(workers, 'l2', 'hits'):,}" if l2 else "-",
                f"{sum(int(worker['computed']) for worker in workers):,}",
                _share(hits / lookups) if lookups else "-",
            ]
        )
    if not rows:
        return []
    header = "server|when|workers reached|L1 entries per worker|L1 hits|L1 misses|L2 hits"
    header += "|computed|hit rate"
    return [
        "",
        "## GET /cache/stats",
        "",
        "Counters since each worker started, summed over the workers reached.",
        "",
        *table(header.split("|"), rows),
        *_redis_table(snapshots),
    ]


def _redis_table(snapshots: Sequence[CacheSnapshot]) -> list[str]:
    rows = []
    for snapshot in snapshots:
        workers = [w for w in _enabled_workers(snapshot) if w["l2"]["enabled"]]
        if not workers:
            continue
        rows.append(
            [
                CACHE_LABELS.get(snapshot.server, snapshot.server),
                snapshot.moment,
                *(
                    f"{_worker_sum(workers, 'l2', name):,}"
                    for name in ("hits", "misses", "written", "failed_writes", "dropped_writes")
                ),
                *(
                    f"{_worker_sum(workers, 'l2', name):,}"
                    for name in ("timeouts", "errors", "unavailable", "breaker_outages")
                ),
            ]
        )
    if not rows:
        return []
    header = "server|when|hits|misses|writes|failed writes|dropped writes|timeouts|errors"
    header += "|lookups skipped|breaker openings"
    return [
        "",
        "L2 (Redis): lookups skipped are keys not looked up because Redis failed, timed out or "
        "the circuit breaker was open; a skipped lookup is served by the model, as with L1 only.",
        "",
        *table(header.split("|"), rows),
    ]


def _redis_trouble(snapshots: Sequence[CacheSnapshot]) -> str:
    """A warning if the L1 + L2 server ran without Redis for part of the bench."""
    last = [s for s in snapshots if s.server == "cache-l2" and _enabled_workers(s)]
    if not last:
        return ""
    workers = [w for w in _enabled_workers(last[-1]) if w["l2"]["enabled"]]
    skipped = _worker_sum(workers, "l2", "unavailable")
    if not skipped:
        return ""
    return (
        f" **Redis was skipped for {skipped:,} lookups** (timeouts: "
        f"{_worker_sum(workers, 'l2', 'timeouts'):,}, circuit breaker openings: "
        f"{_worker_sum(workers, 'l2', 'breaker_outages'):,}): for part of the runs, the "
        "L1 + L2 rows measure L1 only (see the L2 table)."
    )
