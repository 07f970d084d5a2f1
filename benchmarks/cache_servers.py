"""The service with its prediction cache on: L1 only, or L1 and L2 under a bench-only Redis prefix.

The bench shares whatever Redis it is given, so it never flushes a database: its keys carry a
prefix of their own (`churn-bench-<random>`), expire after `L2_TTL_SECONDS` even if the bench is
killed, and `remove_keys` deletes exactly them (SCAN + UNLINK) once the servers have stopped.
"""

from __future__ import annotations

import http.client
import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis

from benchmarks.constants import HOST, KEY_PREFIX_STEM, WORKERS
from benchmarks.servers import BenchCredentials, RunningServer, ServerSpec, churn_service

L2_TTL_SECONDS = 600
"""Lifetime of the bench's keys in Redis: a bound on what a killed bench leaves behind."""
L1_TTL_SECONDS = 86_400
"""Lifetime of an entry in a worker's memory. The default (300 s) would expire every warm
customer at once, about 5 minutes after warming, and a hit-path run at that moment would measure
1,000 misses (2 % of a 10 s run at one connection, as a run with the default showed)."""
_UNLINK_BATCH = 1_000


def bench_key_prefix() -> str:
    """A Redis key prefix no other bench run and no service uses."""
    return f"{KEY_PREFIX_STEM}{secrets.token_hex(6)}"


def cache_servers(
    model_dir: Path,
    *,
    workers: int = WORKERS,
    service_env: Mapping[str, str] | None = None,
    redis_url: str | None = None,
    key_prefix: str | None = None,
    credentials: BenchCredentials | None = None,
) -> dict[str, ServerSpec]:
    """`cache-l1`, and `cache-l2` when given a Redis URL and a key prefix."""
    # Explicit values: a CHURN_REDIS_URL in the bench's own environment must not give the L1-only
    # server an L2.
    l1_env = {
        "CHURN_CACHE_L1_TTL_SECONDS": str(L1_TTL_SECONDS),  # --service-env may set another
        **(service_env or {}),
        "CHURN_CACHE_ENABLED": "true",
        "CHURN_REDIS_URL": "",
    }
    specs = {
        "cache-l1": churn_service(
            model_dir, workers=workers, env=l1_env, name="cache-l1", credentials=credentials
        )
    }
    if redis_url and key_prefix:
        l2_env = {
            **l1_env,
            "CHURN_REDIS_URL": redis_url,
            "CHURN_CACHE_KEY_PREFIX": key_prefix,
            "CHURN_CACHE_L2_TTL_SECONDS": str(L2_TTL_SECONDS),
        }
        specs["cache-l2"] = churn_service(
            model_dir, workers=workers, env=l2_env, name="cache-l2", credentials=credentials
        )
    return specs


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


def redis_problem(url: str) -> str | None:
    """Why Redis at `url` cannot serve the bench, or None if it answers a PING."""
    client = _client(url)
    try:
        client.ping()
    except (redis.RedisError, OSError, ValueError) as error:
        return f"Redis at {url} does not answer ({error})"
    finally:
        client.close()
    return None


def count_keys(url: str, prefix: str) -> int:
    """Keys under `prefix:` in Redis."""
    client = _client(url)
    try:
        return sum(1 for _ in client.scan_iter(match=f"{prefix}:*", count=_UNLINK_BATCH))
    finally:
        client.close()


def remove_keys(url: str, prefix: str) -> int:
    """Delete every key under `prefix:` (SCAN + UNLINK, nothing else); how many were deleted."""
    if not prefix or any(character in prefix for character in "*?[]\\"):
        raise ValueError(f"{prefix!r} is not a plain key prefix")
    client = _client(url)
    removed = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=_UNLINK_BATCH):
            batch.append(key)
            if len(batch) == _UNLINK_BATCH:
                removed += int(client.unlink(*batch))
                batch = []
        if batch:
            removed += int(client.unlink(*batch))
    finally:
        client.close()
    return removed


def redis_readiness(server: RunningServer) -> str:
    """What `/health/ready` says of Redis: disabled, ok or degraded (unknown without answer)."""
    try:
        return str(_get_json(server.port, "/health/ready").get("redis", "unknown"))
    except (OSError, ValueError):
        return "unknown"


def worker_cache_stats(server: RunningServer, *, attempts: int = 40) -> list[dict[str, Any]]:
    """`GET /cache/stats` of each worker, as far as `attempts` new connections reach them.

    Every new connection is answered by whichever worker accepts it, and the stats carry no
    worker id; but an idle worker's counters do not move between two GETs (reading the stats
    touches no cache), so different answers come from different workers. Call it when the
    server is idle; two workers with identical counters count as one.
    """
    seen: list[dict[str, Any]] = []
    for _ in range(attempts):
        stats = _get_json(server.port, "/cache/stats", server.spec.api_key)
        if stats not in seen:
            seen.append(stats)
            if len(seen) == server.spec.workers:
                break
    return seen


def _get_json(port: int, path: str, api_key: str | None = None) -> dict[str, Any]:
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request("GET", path, headers={"X-API-Key": api_key} if api_key else {})
        document: dict[str, Any] = json.loads(connection.getresponse().read())
        return document
    finally:
        connection.close()
