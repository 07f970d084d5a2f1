"""The capacity plan: pods, cores, connections and cost for a target load, from a bench run.

Every input is either a figure `python -m benchmarks service` measured (requests per second per
core at a p99 target) or a value of the Kubernetes manifests in `deploy/k8s/` (requests, HPA
targets, pool sizes), so the plan changes when either does. One uvicorn worker runs per pod and
a worker is one Python process: a pod serves at most what one core does, whatever its CPU limit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

SERVER_LABELS = {
    "production": "production configuration",
    "service": "cache off",
    "cache-l1": "cache L1",
    "cache-l2": "cache L1 + L2",
}
SCENARIO_LABELS = {"predict": "every request computed", "mixed": "mixed", "hit": "all hits"}


class CapacityError(ValueError):
    """The bench results hold no run that the plan can use."""


@dataclass(frozen=True)
class Throughput:
    """One measured configuration: its best RPS at or under the p99 target, per core."""

    label: str
    rps: float
    cores: int
    connections: int
    p99_ms: float

    @property
    def rps_per_core(self) -> float:
        return self.rps / self.cores


@dataclass(frozen=True)
class ClusterShape:
    """What the manifests and settings say; defaults are those of `deploy/k8s/base/`."""

    cpu_request_cores: float = 0.5
    hpa_cpu_utilization: float = 0.70
    hpa_rps_per_pod: float = 100.0
    min_replicas: int = 2
    db_pool_size: int = 20
    db_max_overflow: int = 10
    db_read_pool_size: int = 8
    """The customer reads' own asyncpg connections (`CHURN_DB_READ_POOL_SIZE`)."""
    prediction_log_connections: int = 1
    """The prediction log's own connection (`db/prediction_log/pg_copy.py`)."""
    pg_max_connections: int = 200
    pg_reserved_connections: int = 10
    """Kept free of the API's pools: superuser, migrations, monitoring, `psql`."""
    redis_connections_per_pod: int = 32
    price_per_core_hour: float = 0.04
    headroom: float = 0.70
    """Share of a pod's measured capacity the recommended RPS target lets it reach."""

    @property
    def db_connections_per_pod(self) -> int:
        return (
            self.db_pool_size
            + self.db_max_overflow
            + self.db_read_pool_size
            + self.prediction_log_connections
        )

    @property
    def pg_connections_for_pods(self) -> int:
        return self.pg_max_connections - self.pg_reserved_connections


@dataclass(frozen=True)
class PodPlan:
    """How many pods the HPA runs for `target_rps`, and what they cost and hold open."""

    target_rps: float
    throughput: Throughput
    pods_by_cpu: int
    pods_by_rps_metric: int
    pods: int
    cores_used: float
    cores_requested: float
    usd_per_million: float
    db_connections: int
    redis_connections: int
    fits_postgres: bool


def best_throughput(
    summaries: Sequence[dict[str, Any]],
    cores: int,
    *,
    scenario: str,
    server: str,
    p99_target_ms: float,
    max_error_rate: float = 0.001,
) -> Throughput | None:
    """The highest-RPS run of `server` in `scenario` that met the p99 target without errors."""
    candidates = [
        s
        for s in summaries
        if s["scenario"] == scenario
        and s["server"] == server
        and s.get("rows", 1) == 1
        and s["requests"] > 0
        and s["latency_ms"]["p99"] <= p99_target_ms
        and s["error_rate"] <= max_error_rate
    ]
    if not candidates:
        return None
    best = max(candidates, key=lambda s: s["rps"])
    return Throughput(
        label=f"{SERVER_LABELS.get(server, server)}, {SCENARIO_LABELS.get(scenario, scenario)}",
        rps=float(best["rps"]),
        cores=cores,
        connections=int(best["connections"]),
        p99_ms=float(best["latency_ms"]["p99"]),
    )


def throughputs_from_results(document: dict[str, Any], p99_target_ms: float) -> list[Throughput]:
    """Every configuration of a bench `results.json` the plan can use: the production
    configuration first (what a pod runs), then the service with its cache off and the cache
    suite's configurations."""
    cores = int(document["meta"]["cores"])
    summaries = document["summaries"]
    wanted = [
        ("predict", "production"),
        ("predict", "service"),
        ("mixed", "cache-l1"),
        ("mixed", "cache-l2"),
        ("hit", "cache-l1"),
    ]
    found = [
        best_throughput(
            summaries, cores, scenario=scenario, server=server, p99_target_ms=p99_target_ms
        )
        for scenario, server in wanted
    ]
    usable = [t for t in found if t is not None]
    if not usable:
        raise CapacityError(
            f"no /predict run of the service met p99 <= {p99_target_ms:g} ms without errors; "
            "run `python -m benchmarks service` (or raise --p99-target-ms)"
        )
    return usable


def plan(target_rps: float, throughput: Throughput, shape: ClusterShape) -> PodPlan:
    """Pods the HPA settles on for `target_rps`: the most that any of its metrics asks for.

    The CPU metric keeps each pod's mean use at `hpa_cpu_utilization` of its request, so a pod
    carries that many cores' worth of requests; the RPS metric keeps `hpa_rps_per_pod` each.
    """
    if target_rps <= 0:
        raise ValueError("target_rps must be positive")
    per_core = throughput.rps_per_core
    cores_at_cpu_target = shape.cpu_request_cores * shape.hpa_cpu_utilization
    pods_by_cpu = math.ceil(target_rps / (per_core * cores_at_cpu_target))
    pods_by_rps = math.ceil(target_rps / shape.hpa_rps_per_pod)
    pods = max(shape.min_replicas, pods_by_cpu, pods_by_rps)
    cores_used = target_rps / per_core
    cores_requested = pods * shape.cpu_request_cores
    # A cluster bills the cores it reserves for the pods or the cores they burn, whichever is more.
    billed_cores = max(cores_used, cores_requested)
    usd_per_million = shape.price_per_core_hour * billed_cores / 3600 / target_rps * 1e6
    db_connections = pods * shape.db_connections_per_pod
    return PodPlan(
        target_rps=target_rps,
        throughput=throughput,
        pods_by_cpu=pods_by_cpu,
        pods_by_rps_metric=pods_by_rps,
        pods=pods,
        cores_used=cores_used,
        cores_requested=cores_requested,
        usd_per_million=usd_per_million,
        db_connections=db_connections,
        redis_connections=pods * shape.redis_connections_per_pod,
        fits_postgres=db_connections <= shape.pg_connections_for_pods,
    )


def recommended_rps_per_pod(throughput: Throughput, shape: ClusterShape) -> int:
    """An HPA RPS target that leaves each one-worker pod `headroom` of its measured capacity,
    rounded down to a hundred."""
    return max(100, int(throughput.rps_per_core * shape.headroom) // 100 * 100)


def max_pods_for_postgres(shape: ClusterShape) -> int:
    """Pods whose pools, all full, still fit in PostgreSQL's `max_connections`."""
    return shape.pg_connections_for_pods // shape.db_connections_per_pod


def markdown(
    throughputs: Sequence[Throughput],
    targets: Sequence[float],
    shape: ClusterShape,
    *,
    p99_target_ms: float,
    source: str,
) -> str:
    """The plan as markdown: measured capacity, then pods and cost per target, seed and tuned."""
    lines = [
        f"Capacity plan from `{source}`: the best RPS of each configuration with p99 <= "
        f"{p99_target_ms:g} ms and < 0.1 % errors, divided by the cores of that run "
        "(the load generator shared them, so a core does at least this much).",
        "",
        "| configuration | connections | RPS | p99 ms | RPS per core |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {t.label} | {t.connections} | {t.rps:,.0f} | {t.p99_ms:.2f} | {t.rps_per_core:,.0f} |"
        for t in throughputs
    ]
    tuned_shapes = [
        (t, replace(shape, hpa_rps_per_pod=recommended_rps_per_pod(t, shape))) for t in throughputs
    ]
    lines += [
        "",
        f"Pods for a target load: the HPA runs the most that any metric asks for (CPU at "
        f"{shape.hpa_cpu_utilization:.0%} of a {shape.cpu_request_cores:g}-core request, "
        f"RPS per pod, at least {shape.min_replicas}); cost at {shape.price_per_core_hour:g} USD "
        "per core-hour on the larger of the cores used and the cores requested; database "
        f"connections at {shape.db_connections_per_pod} per pod (pool {shape.db_pool_size} + "
        f"overflow {shape.db_max_overflow} + reads {shape.db_read_pool_size} + the log's "
        f"{shape.prediction_log_connections}) against {shape.pg_connections_for_pods} of "
        f"max_connections {shape.pg_max_connections}.",
        "",
        "| configuration | HPA RPS target | target RPS | pods (CPU / RPS metric) | pods "
        "| cores used | cores requested | USD per million | DB connections | fits PostgreSQL |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for throughput, tuned in tuned_shapes:
        for hpa_shape, label in ((shape, "seed"), (tuned, "measured")):
            for target in targets:
                p = plan(target, throughput, hpa_shape)
                lines.append(
                    f"| {throughput.label} | {hpa_shape.hpa_rps_per_pod:,.0f} ({label}) "
                    f"| {target:,.0f} | {p.pods_by_cpu} / {p.pods_by_rps_metric} | **{p.pods}** "
                    f"| {p.cores_used:.2f} | {p.cores_requested:.1f} | {p.usd_per_million:.4f} "
                    f"| {p.db_connections:,} | {'yes' if p.fits_postgres else 'no'} |"
                )
    lines += [
        "",
        f"At {shape.db_connections_per_pod} connections per pod, PostgreSQL's max_connections "
        f"{shape.pg_max_connections} holds the pools of {max_pods_for_postgres(shape)} pods.",
    ]
    return "\n".join(lines) + "\n"


def load_results(path: Path) -> dict[str, Any]:
    """A bench `results.json` (or the folder holding it)."""
    if path.is_dir():
        path = path / "results.json"
    try:
        document: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise CapacityError(
            f"{path}: no such file; run `python -m benchmarks service` first"
        ) from None
    except json.JSONDecodeError as error:
        raise CapacityError(f"{path}: not a bench results file ({error})") from None
    if "meta" not in document or "summaries" not in document:
        raise CapacityError(f"{path}: not a bench results file (no meta or summaries)")
    return document
