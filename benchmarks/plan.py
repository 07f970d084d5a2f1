"""Which measurements a bench makes, and in which order."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

Scenario = Literal["predict", "batch", "overload", "hit", "mixed"]

SERVERS = ("production", "naive", "service", "fastapi", "asgi")
"""The default suite's servers. "production" is the service as deployed (`benchmarks.production`:
authentication, rate limits, metrics, L1 cache, log on PostgreSQL), the headline; "service" runs
with its prediction cache off and its log on SQLite, to measure the model path."""
CACHE_SERVERS = ("service", "cache-l1", "cache-l2")
"""The cache suite's servers: the service with its cache off (the reference), with L1 only,
and with L1 and L2 (Redis)."""
ALL_SERVERS = (*SERVERS, *CACHE_SERVERS[1:])
SUITES = ("default", "cache")
CACHE_SCENARIOS = ("hit", "mixed")
# (server, rows per request): the naive baseline takes several seconds per 10,000 rows.
BATCHES: tuple[tuple[str, int], ...] = (("service", 1_000), ("naive", 1_000), ("service", 10_000))
# A few requests in flight keep both workers busy without queueing whole batches behind others.
BATCH_CONNECTIONS = 4


@dataclass(frozen=True)
class Run:
    """One wrk run against one server."""

    scenario: Scenario
    server: str
    connections: int
    rows: int = 1
    """Customers per request: 1 for `/predict`, more for `/predict/batch`."""
    round: int = 0
    hit_ratio: float | None = None
    """Cache scenarios: the share of requests whose body is warm (1 on the hit path)."""

    @property
    def path(self) -> str:
        return "/predict/batch" if self.scenario == "batch" else "/predict"

    @property
    def timeout_s(self) -> int:
        """wrk's per-request timeout; slower answers count as timeouts, not as latencies."""
        return {"predict": 5, "batch": 30, "overload": 10, "hit": 5, "mixed": 5}[self.scenario]


def plan_runs(
    servers: Sequence[str],
    connections: Sequence[int],
    *,
    rounds: int = 1,
    overload_connections: int | None = 512,
    suites: Collection[str] = ("default",),
    cache_connections: Sequence[int] = (32,),
    hit_ratio: float = 0.5,
) -> list[Run]:
    """Every run of a bench; at each connection level the servers take turns going first.

    Interleaving spreads the machine's noise (other processes, thermal state) over all servers
    instead of letting it land on whichever ran during a bad minute. In each round the default
    suite comes first, then the cache suite: the hit path and the mixed workload at each of
    `cache_connections`, the rotation carrying on from one workload to the next.
    """
    runs: list[Run] = []
    order = [name for name in SERVERS if name in servers]
    cache_order = [name for name in CACHE_SERVERS if name in servers]
    workloads: tuple[tuple[Scenario, float], ...] = (("hit", 1.0), ("mixed", hit_ratio))
    for round_ in range(rounds):
        if "default" in suites:
            runs.extend(_default_round(servers, order, connections, round_, overload_connections))
        if "cache" in suites and cache_order:
            turn = round_ * len(cache_connections) * len(workloads)
            for count in cache_connections:
                for scenario, ratio in workloads:
                    shift = turn % len(cache_order)
                    turn += 1
                    runs.extend(
                        Run(scenario, server, count, round=round_, hit_ratio=ratio)
                        for server in cache_order[shift:] + cache_order[:shift]
                    )
    return runs


def _default_round(
    servers: Sequence[str],
    order: Sequence[str],
    connections: Sequence[int],
    round_: int,
    overload_connections: int | None,
) -> list[Run]:
    runs: list[Run] = []
    for level, count in enumerate(connections):
        shift = (round_ * len(connections) + level) % len(order) if order else 0
        for server in [*order[shift:], *order[:shift]]:
            runs.append(Run("predict", server, count, round=round_))
    for server, rows in BATCHES:
        if server in servers:
            runs.append(Run("batch", server, BATCH_CONNECTIONS, rows, round_))
    if overload_connections and "service" in servers:
        runs.append(Run("overload", "service", overload_connections, round=round_))
    return runs
