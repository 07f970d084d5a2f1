"""Which measurements a bench makes, and in which order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Scenario = Literal["predict", "batch", "overload"]

SERVERS = ("naive", "service", "fastapi", "asgi")
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

    @property
    def path(self) -> str:
        return "/predict/batch" if self.scenario == "batch" else "/predict"

    @property
    def timeout_s(self) -> int:
        """wrk's per-request timeout; slower answers count as timeouts, not as latencies."""
        return {"predict": 5, "batch": 30, "overload": 10}[self.scenario]


def plan_runs(
    servers: Sequence[str],
    connections: Sequence[int],
    *,
    rounds: int = 1,
    overload_connections: int | None = 512,
) -> list[Run]:
    """Every run of a bench; at each connection level the servers take turns going first.

    Interleaving spreads the machine's noise (other processes, thermal state) over all servers
    instead of letting it land on whichever ran during a bad minute.
    """
    runs: list[Run] = []
    order = [name for name in SERVERS if name in servers]
    for round_ in range(rounds):
        for level, count in enumerate(connections):
            shift = (round_ * len(connections) + level) % len(order) if order else 0
            for server in order[shift:] + order[:shift]:
                runs.append(Run("predict", server, count, round=round_))
        for server, rows in BATCHES:
            if server in servers:
                runs.append(Run("batch", server, BATCH_CONNECTIONS, rows, round_))
        if overload_connections and "service" in servers:
            runs.append(Run("overload", "service", overload_connections, round=round_))
    return runs
